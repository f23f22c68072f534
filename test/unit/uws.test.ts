import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadNativeUws, loadUws, UwsLoadError, uwsPackageDir } from '../../dist/uws.js';

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

t.test('an ABI with no binary throws UwsLoadError that refuses the JS fallback and says what to do', async (t) => {
  const target = { platform: process.platform, arch: process.arch, modules: '999' };
  const err = errorOf(() => loadNativeUws(uwsPackageDir(), target));
  t.type(err, UwsLoadError);
  t.equal(err?.name, 'UwsLoadError');
  t.match(err?.message, `no native binary loads for ${process.platform}-${process.arch}, Node ABI 999`);
  t.match(err?.message, /refuses to run on the pure-JS fallback/);
  t.match(err?.message, `uws_${process.platform}_${process.arch}_999.node: not found`, 'names the file it looked for');
  t.match(err?.message, /point the "uWebSockets.js" alias/, 'says how to fix it');
});

t.test('an unknown platform or architecture is refused the same way', async (t) => {
  const rows = [
    { platform: 'plan9', arch: process.arch, modules: process.versions.modules },
    { platform: process.platform, arch: 'riscv128', modules: process.versions.modules },
    { platform: '', arch: '', modules: '' },
    { platform: '../../..', arch: 'x', modules: '1' },
  ];
  for (const target of rows) {
    const err = errorOf(() => loadNativeUws(uwsPackageDir(), target));
    t.type(err, UwsLoadError, JSON.stringify(target));
    t.match(err?.message, /refuses to run on the pure-JS fallback/, JSON.stringify(target));
  }
});

t.test('a package folder without binaries is refused, listing both places searched', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-uws-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = errorOf(() => loadNativeUws(dir));
  t.type(err, UwsLoadError);
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  t.match(err?.message, `${join(dir, 'binaries', file)}: not found`);
  t.match(err?.message, `${join(dir, file)}: not found`);
});

t.test("a file with the binary's name that is not a loadable library is refused, not fallen back from", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-uws-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'binaries'));
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  writeFileSync(join(dir, 'binaries', file), 'this is not an ELF file');
  const err = errorOf(() => loadNativeUws(dir));
  t.type(err, UwsLoadError);
  t.match(err?.message, join(dir, 'binaries', file));
  t.notMatch(err?.message, `${join(dir, 'binaries', file)}: not found`, 'reports the load failure, not a missing file');
});

t.test('loadUws loads the native binary, whose App is a function', async (t) => {
  const uws = loadUws();
  t.type(uws.App, 'function');
  t.type(uws.us_listen_socket_close, 'function');
  const binary = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  t.ok(
    // require.cache is shared by every createRequire, so it lists the addon uws.ts loaded.
    Object.keys(createRequire(import.meta.url).cache).some((k) => k.endsWith(binary)),
    `${binary} is the module that was loaded`,
  );
});
