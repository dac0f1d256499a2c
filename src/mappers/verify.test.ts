import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatLine } from '../verify/compare.ts';
import * as mapper from './verify_mapper.ts';
import * as ffclip from './verify_ffclip.ts';
import { FIXTURES } from './testing.ts';
import { readSafetensors } from '../io/safetensors.ts';

for (const [name, v, other] of [['mapper', mapper, 'ffclip'], ['ffclip', ffclip, 'mapper']] as const) {
  test(`verify(${name}): every stored output and gradient matches the PyTorch fixture`, async () => {
    const dir = `${FIXTURES}${name}`;
    assert.equal(v.detect(dir), true);
    assert.equal(v.detect(`${FIXTURES}${other}`), false);
    assert.equal(v.detect(`${FIXTURES}stylegan2`), false);
    const lines = await v.verify(dir);
    const failed = lines.filter((l) => !l.pass);
    assert.deepEqual(failed.map(formatLine), []);
    // one line per stored non-input tensor at least (an unchecked one would be a FAIL line)
    const stored = ['io', 'grad'].flatMap((f) => [...readSafetensors(`${dir}/${f}.safetensors`).tensors.keys()].map((k) => `${f}:${k}`));
    const checked = new Set(lines.map((l) => l.name.replace(/ \[[^\]]*\]$/, '')));
    const inputs = stored.filter((k) => !checked.has(k));
    assert.ok(inputs.every((k) => /\.(w|R|e|e_hair|e_color|e_fwd)$/.test(k)), `unchecked: ${inputs.join(', ')}`);
  });
}
