// Bundles the CLI (src/cli/bin.ts and everything it imports, dependencies included) into one ES
// module, dist/bundle/tokend.mjs, for the container image: no node_modules at run time.
// Usage: node scripts/bundle.mjs   (npm run bundle)
import { build } from 'esbuild';

const result = await build({
  entryPoints: ['src/cli/bin.ts'],
  outfile: 'dist/bundle/tokend.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __tokendCreateRequire } from 'node:module';\nconst require = __tokendCreateRequire(import.meta.url);" },
  legalComments: 'linked',
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => (o.entryPoint ? sum + o.bytes : sum), 0);
console.log(`dist/bundle/tokend.mjs: ${(bytes / 1024).toFixed(0)} KiB`);
