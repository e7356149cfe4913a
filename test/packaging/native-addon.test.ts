/**
 * packaging/sea/native-addon.cjs: how a single executable extracts and loads an embedded .node
 * addon. Run in plain Node with the SEA asset and dlopen injected; one case loads the real
 * better-sqlite3 addon in a child process.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const require = createRequire(import.meta.url);
const LOADER = require.resolve('../../packaging/sea/native-addon.cjs');

interface Io {
  getAsset?: (key: string) => Buffer;
  dlopen?: (file: string) => unknown;
  env?: NodeJS.ProcessEnv;
}
const { loadEmbeddedAddon, cacheDirCandidates } = require(LOADER) as {
  loadEmbeddedAddon(assetKey: string, stem: string, io?: Io): unknown;
  cacheDirCandidates(env: NodeJS.ProcessEnv): string[];
};

describe('packaging: embedded native addon loader', () => {
  let tmp: string;
  const asset = Buffer.from('pretend this is an ELF shared object');
  const opened: string[] = [];
  const io = (env: NodeJS.ProcessEnv): Io => ({
    getAsset: (key) => {
      assert.equal(key, 'native/thing.node');
      return asset;
    },
    dlopen: (file) => {
      opened.push(file);
      assert.deepEqual(readFileSync(file), asset, 'dlopen saw a file other than the asset');
      return { file };
    },
    env: { TMPDIR: tmp, ...env },
  });

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'midcert-native-'));
    opened.length = 0;
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('orders cache directories: MIDCERT_CACHE_DIR, CACHE_DIRECTORY, XDG_CACHE_HOME, HOME, tmp', () => {
    const dirs = cacheDirCandidates({ MIDCERT_CACHE_DIR: '/a', CACHE_DIRECTORY: '/b:/c', XDG_CACHE_HOME: '/x', HOME: '/h', TMPDIR: '/t' });
    assert.deepEqual(dirs.slice(0, 4), ['/a', '/b', '/x/midcert', '/h/.cache/midcert']);
    assert.match(dirs[4]!, /^\/t\/midcert-\d+$/);
    assert.deepEqual(cacheDirCandidates({ XDG_CACHE_HOME: 'relative' }).length, 1, 'a relative XDG_CACHE_HOME is ignored');
  });

  it('extracts to a private directory under a content-hashed name, read-only, and reuses it', () => {
    const dir = join(tmp, 'deep', 'cache');
    const result = loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: dir })) as { file: string };
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^thing-[0-9a-f]{16}\.node$/);
    assert.equal(result.file, join(dir, files[0]!));
    assert.equal(statSync(result.file).mode & 0o777, 0o500);
    const inode = statSync(result.file).ino;
    loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: dir }));
    assert.equal(statSync(result.file).ino, inode, 'extracted again');
    assert.deepEqual(readdirSync(dir), files, 'temporary files left behind');
  });

  it('replaces a cached file whose content does not match its name', () => {
    const dir = join(tmp, 'cache');
    const { file } = loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: dir })) as { file: string };
    chmodSync(file, 0o700);
    writeFileSync(file, 'evil');
    loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: dir }));
    assert.deepEqual(readFileSync(file), asset);
  });

  it('tightens a too-open directory of ours, and skips a symlink or another user\'s directory', function () {
    const open = join(tmp, 'open');
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o755);
    loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: open }));
    assert.equal(statSync(open).mode & 0o777, 0o700);

    const real = join(tmp, 'real');
    mkdirSync(real, { mode: 0o700 });
    const link = join(tmp, 'link');
    symlinkSync(real, link);
    const fallback = join(tmp, 'xdg');
    loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: link, XDG_CACHE_HOME: fallback }));
    assert.ok(opened.at(-1)!.startsWith(join(fallback, 'midcert') + '/'), opened.at(-1));
    assert.deepEqual(readdirSync(real), []);

    if (process.getuid?.() !== 0) this.skip();
    const foreign = join(tmp, 'foreign');
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, 4242, 4242);
    loadEmbeddedAddon('native/thing.node', 'thing', io({ MIDCERT_CACHE_DIR: foreign, XDG_CACHE_HOME: fallback }));
    assert.ok(opened.at(-1)!.startsWith(join(fallback, 'midcert') + '/'));
    assert.deepEqual(readdirSync(foreign), []);
  });

  it('tries the next directory when dlopen fails there (e.g. a noexec mount), and explains when none works', () => {
    const first = join(tmp, 'first');
    const second = join(tmp, 'second');
    let calls = 0;
    const result = loadEmbeddedAddon('native/thing.node', 'thing', {
      ...io({ MIDCERT_CACHE_DIR: first, XDG_CACHE_HOME: second }),
      dlopen: (file) => {
        calls += 1;
        if (file.startsWith(first)) throw new Error('failed to map segment from shared object');
        return { file };
      },
    }) as { file: string };
    assert.equal(calls, 2);
    assert.ok(result.file.startsWith(second));
    assert.throws(() => loadEmbeddedAddon('native/thing.node', 'thing', { ...io({ MIDCERT_CACHE_DIR: first }), dlopen: () => { throw new Error('nope'); } }),
      /cannot load the embedded native addon native\/thing\.node; set MIDCERT_CACHE_DIR/);
  });

  it('loads the real better-sqlite3 addon from its extracted copy (child process)', async () => {
    const script = `
      const fs = require('node:fs');
      const { loadEmbeddedAddon, extractedPath } = require(${JSON.stringify(LOADER)});
      const bytes = fs.readFileSync(require.resolve('better-sqlite3/build/Release/better_sqlite3.node'));
      const addon = loadEmbeddedAddon('native/better_sqlite3.node', 'better_sqlite3', { getAsset: () => bytes });
      const Database = require('better-sqlite3');
      const db = new Database(':memory:', { nativeBinding: addon });
      process.stdout.write(JSON.stringify({ v: db.prepare('select sqlite_version() as v').get().v, file: extractedPath('native/better_sqlite3.node') }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: process.cwd(), env: { PATH: process.env.PATH, MIDCERT_CACHE_DIR: join(tmp, 'c'), TMPDIR: tmp } });
    const out = JSON.parse(stdout) as { v: string; file: string };
    assert.match(out.v, /^3\.\d+\.\d+$/);
    assert.match(out.file, /better_sqlite3-[0-9a-f]{16}\.node$/);
  });
});
