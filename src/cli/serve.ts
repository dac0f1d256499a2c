// `clipmapper serve --port 8080`: the HTTP API (POST /api/edit, GET /api/health, POST /api/export)
// and the web page, with every network loaded once at start.
import type { Command } from 'commander';
import { METHODS, type EditMethod } from '../pipeline/nets.ts';
import { addWeightFlags, pipelineOptions, type WeightFlags } from './edit.ts';

interface ServeFlags extends WeightFlags {
  port: string; host: string; method: string; maxUploadMb: string; maxPixels: string; queue: string; exportDir?: string; log?: boolean;
}

export function serveCommand(program: Command): Command {
  const c = program.command('serve')
    .description('serve the HTTP API and the web page (sessions loaded once, bounded inference queue)')
    .option('-p, --port <port>', 'port', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('-m, --method <methods>', `comma-separated methods to load (${METHODS.join(', ')}); the first is the default`, 'hairclip')
    .option('--max-upload-mb <mb>', 'largest uploaded file', '10')
    .option('--max-pixels <n>', 'largest uploaded image in pixels', '25000000')
    .option('--queue <n>', 'requests that may wait behind the running one before 503', '8')
    .option('--export-dir <dir>', 'where /api/export writes .onnx files (default: a temp folder)')
    .option('--log', 'request log on stdout');
  addWeightFlags(c);
  c.action(async (o: ServeFlags) => {
    const methods = o.method.split(',').map((s) => s.trim()).filter(Boolean) as EditMethod[];
    for (const m of methods) if (!METHODS.includes(m)) throw new Error(`--method: unknown method '${m}' (${METHODS.join(', ')})`);
    const { startServer } = await import('../server/index.ts');
    const { url } = await startServer({
      port: Number(o.port), host: o.host, methods,
      pipeline: { all: pipelineOptions(o) },
      maxUploadBytes: Math.round(Number(o.maxUploadMb) * 1024 * 1024),
      maxPixels: Number(o.maxPixels),
      queueLimit: Number(o.queue),
      exportDir: o.exportDir,
      logger: o.log,
    });
    console.log(`clipmapper: serving ${methods.join(', ')} on ${url}`);
  });
  return c;
}
