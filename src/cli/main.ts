// The `clipmapper` command line. Each command lives in its own file and registers itself here
// with one `xxxCommand(program)` call.
import { Command } from 'commander';
import { IoError } from '../io/errors.ts';
import { inspectCommand } from './inspect.ts';

const program = new Command('clipmapper')
  .description('text- and reference-driven face editing in StyleGAN2 latent space (StyleCLIP mapper, HairCLIP, FFCLIP)');

inspectCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // a bad input file is the user's problem, not a crash: one line, no stack
  if (e instanceof IoError || (e as NodeJS.ErrnoException).code === 'ENOENT') {
    console.error(`clipmapper: ${(e as Error).message}`);
    process.exitCode = 1;
  } else {
    throw e;
  }
}
