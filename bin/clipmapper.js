#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx: nothing to build after `npm ci`.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
