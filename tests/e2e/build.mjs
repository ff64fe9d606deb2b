// Bundles the official WuKongIM JS SDK (npm `wukongimjssdk`, pinned in
// package.json) into dist/wksdk.mjs so Node can load it: the package ships
// ES modules with extension-less imports, which Node's ESM loader rejects.
//
// The entry re-exports lib/sdk.js, the SDK's full public surface
// (WKSDK, Channel, MessageText, CMDContent, ...); lib/index.js itself only
// has a default export.
//
// The SDK expects a browser-style global `WebSocket`; the worker
// (lib/worker.mjs) installs the `ws` package's implementation there before
// importing the bundle, so `ws` is never part of the bundle.
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, 'dist', 'wksdk.mjs');

await esbuild.build({
  stdin: {
    contents: "export * from 'wukongimjssdk/lib/sdk';\nexport { Setting } from 'wukongimjssdk/lib/proto';\n",
    resolveDir: here,
    sourcefile: 'wksdk-entry.js',
    loader: 'js',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile,
  external: ['ws'],
  // CommonJS dependencies (crypto-js, curve25519-js) call require() for
  // Node built-ins; give the ESM bundle a real require.
  banner: {
    js: "import { createRequire as __wkCreateRequire } from 'node:module';\nconst require = __wkCreateRequire(import.meta.url);",
  },
  // The SDK's TypeScript helpers use top-level `this`; esbuild warns about it.
  logLevel: 'error',
});

console.log(`bundled wukongimjssdk -> ${outfile}`);
