// The page's copy of our browser-side code (src/web/browser.ts), bundled once per process with
// esbuild into one ES module, so the page needs no build step and runs the same source as Node.
import { fileURLToPath } from 'node:url';

const ENTRY = fileURLToPath(new URL('../web/browser.ts', import.meta.url));
let bundle: Promise<string> | null = null;

export function browserBundle(): Promise<string> {
  if (!bundle) {
    bundle = (async () => {
      const esbuild = await import('esbuild');
      const r = await esbuild.build({
        entryPoints: [ENTRY], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, minify: false,
        legalComments: 'none', logLevel: 'silent',
      });
      return r.outputFiles[0].text;
    })();
    bundle.catch(() => { bundle = null; });
  }
  return bundle;
}
