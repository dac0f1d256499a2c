// Every op with a VJP rule must have a finite-difference check, so a new op cannot silently ship
// an untested gradient. The checks are the `fdTest([...ops], ...)` cases of the op test files;
// each of those asserts at run time that its forward graph really contains the ops it names, so
// the labels read here are verified, and this test only needs to collect them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listOps } from '../index.ts';

const FD_TEST_FILES = ['elementwise.test.ts', 'shape.test.ts', 'conv.test.ts', 'nn.test.ts', 'resample.test.ts'];

function coveredOps(): Set<string> {
  const covered = new Set<string>();
  for (const file of FD_TEST_FILES) {
    const src = readFileSync(join(import.meta.dirname, file), 'utf8');
    for (const m of src.matchAll(/fdTest\(\s*\[([^\]]*)\]/g)) {
      for (const name of m[1].matchAll(/'([A-Za-z0-9_]+)'/g)) covered.add(name[1]);
    }
  }
  return covered;
}

test('every registered op with a VJP rule has a finite-difference check', () => {
  const covered = coveredOps();
  // StopGradient's rule is "no cotangent" by design: a finite difference sees the identity it
  // computes, so it cannot check it; elementwise.test.ts tests it directly instead.
  const NOT_FD_CHECKABLE = new Set(['StopGradient']);
  const withVjp = listOps().filter((op) => op.vjp && !NOT_FD_CHECKABLE.has(op.name)).map((op) => op.name);
  assert.ok(withVjp.length > 30, `the op table looks empty (${withVjp.length} ops with VJPs)`);
  const missing = withVjp.filter((n) => !covered.has(n));
  assert.deepEqual(missing, [], `ops with a VJP rule but no fdTest case in ${FD_TEST_FILES.join(', ')}: ${missing.join(', ')}`);
});

test('fdTest labels name registered ops', () => {
  const known = new Set(listOps().map((op) => op.name));
  const unknown = [...coveredOps()].filter((n) => !known.has(n));
  assert.deepEqual(unknown, [], `fdTest cases name ops that are not in the op table: ${unknown.join(', ')}`);
});
