// The SDK's size beside centrifuge-js's and socket.io-client's, each measured the same
// way: the package as published (ours: `npm pack` of client/), installed with its
// dependencies into a scratch directory, its whole main entry (`export *`, so nothing
// is tree-shaken away) bundled for the browser and minified by esbuild, then gzipped
// (zlib, level 9). Prints a Markdown table for client/README.md.
//
//   node client/scripts/size.mjs        (from the repository root, after `make build`)
//
// Needs the npm registry (npm install of the two others) and esbuild (a root devDependency).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

/** Pinned: the figures in the README name these versions. */
const OTHERS = [
  ['centrifuge', '5.8.0'],
  ['socket.io-client', '4.8.4'],
];

const client = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'herald-size-'));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

try {
  // Ours, as `npm pack` makes it (prepack builds dist/).
  const tarball = npm(['pack', '--pack-destination', work, '--silent'], client).trim().split('\n').at(-1);
  const own = JSON.parse(readFileSync(join(client, 'package.json'), 'utf8'));
  writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'size', private: true }));
  npm(
    ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', join(work, tarball), ...OTHERS.map(([n, v]) => `${n}@${v}`)],
    work,
  );

  const rows = [];
  for (const [name, version] of [[own.name, own.version], ...OTHERS]) {
    const entry = join(work, `entry-${rows.length}.mjs`);
    writeFileSync(entry, `export * from '${name}';\n`);
    const out = await build({
      entryPoints: [entry],
      absWorkingDir: work,
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
    });
    const code = out.outputFiles[0].contents;
    rows.push({ name, version, min: code.length, gzip: gzipSync(code, { level: 9 }).length });
  }

  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log('| Package | Version | Minified | Minified + gzip |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| \`${r.name}\` | ${r.version} | ${kb(r.min)} | ${kb(r.gzip)} |`);
  console.log(`\nesbuild ${(await import('esbuild')).version}, node ${process.version}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
