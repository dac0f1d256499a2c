// The `clipmapper` command line. Each command lives in its own file and registers itself here
// with one `xxxCommand(program)` call.
import { Command } from 'commander';
import { IoError } from '../io/errors.ts';
import { inspectCommand } from './inspect.ts';
import { verifyCommand } from './verify.ts';
import { weightsCommand } from './weights.ts';
import { editCommand, exportCommand } from './edit.ts';
import { serveCommand } from './serve.ts';
import { trainCommand } from './train.ts';
import { evalCommand } from './eval.ts';

const program = new Command('clipmapper')
  .description('text- and reference-driven face editing in StyleGAN2 latent space (StyleCLIP mapper, HairCLIP, FFCLIP)');

inspectCommand(program);
verifyCommand(program);
weightsCommand(program);
editCommand(program);
exportCommand(program);
serveCommand(program);
trainCommand(program);
evalCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // a bad input file is the user's problem, not a crash: one line, no stack
  if (e instanceof IoError || (e as NodeJS.ErrnoException).code === 'ENOENT') {
    console.error(`clipmapper: ${(e as Error).message}`);
    process.exitCode = 1;
  } else if (e instanceof Error && !process.env.CLIPMAPPER_DEBUG) {
    // any other failure: the message, and the stack only when asked for
    console.error(`clipmapper: ${e.message}`);
    process.exitCode = 1;
  } else {
    throw e;
  }
}
