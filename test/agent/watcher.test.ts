import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic } from '../../common/fs.js';
import type { MidPaths } from '../../agent/mid-install.js';
import { watchMidFiles, type MidFileEvent, type MidFileWatch } from '../../agent/watcher.js';

const DEBOUNCE_MS = 150;
/** Long enough for a burst to settle and its one event to fire, with room for a slow CI host. */
const SETTLE_MS = 900;

describe('agent watcher (keystore and config.xml)', function () {
  this.timeout(60_000);
  let dir: string;
  let paths: MidPaths;
  let events: MidFileEvent[];
  let watch: MidFileWatch | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-watch-'));
    const agentDir = join(dir, 'agent');
    await mkdir(join(agentDir, 'security'), { recursive: true });
    paths = {
      home: dir, agentDir, configXml: join(agentDir, 'config.xml'), keystore: join(agentDir, 'security', 'agent_keystore'),
      script: join(agentDir, 'bin', 'scripts', 'manage-certificates.sh'), log: join(agentDir, 'logs', 'agent0.log.0'),
    };
    await writeFile(paths.configXml, '<parameters/>\n');
    await writeFile(paths.keystore, 'keystore v0');
    events = [];
    watch = await watchMidFiles(paths, (e) => events.push(e), { debounceMs: DEBOUNCE_MS });
  });

  afterEach(async () => {
    await watch?.close();
    watch = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** Events since the last call, after letting the current burst settle. */
  async function settled(): Promise<MidFileEvent[]> {
    await sleep(SETTLE_MS);
    return events.splice(0);
  }

  const types = (list: MidFileEvent[]): string[] => list.map((e) => e.type);

  it('reports one debounced event per burst of atomic replaces (temp file + rename) of the keystore', async () => {
    for (let i = 1; i <= 5; i += 1) await writeFileAtomic(paths.keystore, `keystore v${i}`);
    const first = await settled();
    assert.deepEqual(types(first), ['keystore-changed']);
    assert.equal(first[0]?.path, paths.keystore);
    assert.ok(!Number.isNaN(Date.parse(first[0]?.at ?? '')), 'at is an ISO time');
    // The file is a new inode now: later replaces and in-place writes are still seen.
    await writeFileAtomic(paths.keystore, 'keystore v6');
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    await appendFile(paths.keystore, ' appended');
    assert.deepEqual(types(await settled()), ['keystore-changed']);
  });

  it('reports one debounced event per burst of in-place writes to config.xml, separately from the keystore', async () => {
    for (let i = 0; i < 6; i += 1) {
      await writeFile(paths.configXml, `<parameters><!-- ${i} --></parameters>\n`);
      await sleep(20);
    }
    await writeFileAtomic(paths.keystore, 'keystore changed in the same burst');
    const list = await settled();
    assert.deepEqual(types(list).sort(), ['config-changed', 'keystore-changed']);
    assert.equal(list.find((e) => e.type === 'config-changed')?.path, paths.configXml);
  });

  it('sees a replace by rename from another directory (mv new-keystore agent/security/agent_keystore)', async () => {
    const staged = join(dir, 'staged-keystore');
    await writeFile(staged, 'staged keystore');
    await rename(staged, paths.keystore);
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    const stagedConfig = join(dir, 'config.xml.new');
    await writeFile(stagedConfig, '<parameters><parameter name="url" value="x"/></parameters>\n');
    await rename(stagedConfig, paths.configXml);
    assert.deepEqual(types(await settled()), ['config-changed']);
  });

  it('ignores unrelated files in the watched directories', async () => {
    await writeFile(join(paths.agentDir, 'wrapper.conf'), 'a');
    await writeFile(join(paths.agentDir, 'config.xml.bak'), 'b');
    await writeFile(join(paths.agentDir, 'security', 'agent_keystore.old'), 'c');
    await writeFileAtomic(join(paths.agentDir, 'security', 'other_keystore'), 'd');
    await appendFile(join(paths.agentDir, 'wrapper.conf'), 'more');
    await unlink(join(paths.agentDir, 'config.xml.bak'));
    assert.deepEqual(await settled(), []);
  });

  it('keeps working after the keystore is deleted and recreated', async () => {
    await unlink(paths.keystore);
    assert.deepEqual(types(await settled()), ['keystore-changed'], 'the deletion is a change');
    await writeFile(paths.keystore, 'recreated');
    assert.deepEqual(types(await settled()), ['keystore-changed'], 'the recreation is seen');
    await appendFile(paths.keystore, ' and modified');
    assert.deepEqual(types(await settled()), ['keystore-changed'], 'changes to the recreated file are seen');
    // Delete + recreate inside one burst: one event.
    await unlink(paths.configXml);
    await writeFile(paths.configXml, '<parameters/>\n');
    assert.deepEqual(types(await settled()), ['config-changed']);
  });

  it('keeps working after the whole security directory is removed and recreated (restore from backup)', async () => {
    await rm(join(paths.agentDir, 'security'), { recursive: true });
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    await mkdir(join(paths.agentDir, 'security'));
    await writeFile(paths.keystore, 'restored'); // no pause: written while the new directory is being picked up
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    await writeFileAtomic(paths.keystore, 'replaced again');
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    await writeFile(join(paths.agentDir, 'security', 'agent_keystore.bak'), 'unrelated');
    assert.deepEqual(await settled(), []);
  });

  it('sees a keystore whose directory does not exist yet when the watch starts', async () => {
    await watch?.close();
    await rm(join(paths.agentDir, 'security'), { recursive: true });
    watch = await watchMidFiles(paths, (e) => events.push(e), { debounceMs: DEBOUNCE_MS });
    await mkdir(join(paths.agentDir, 'security'));
    await writeFile(join(paths.agentDir, 'security', 'unrelated'), 'x');
    assert.deepEqual(await settled(), []);
    await writeFileAtomic(paths.keystore, 'first import');
    assert.deepEqual(types(await settled()), ['keystore-changed']);
    await writeFile(paths.configXml, '<parameters/>\n<!-- edited -->\n');
    assert.deepEqual(types(await settled()), ['config-changed']);
  });

  it('fires nothing after close, even for a burst that was still settling', async () => {
    await writeFileAtomic(paths.keystore, 'late');
    await sleep(20);
    await watch?.close();
    watch = undefined;
    await writeFileAtomic(paths.keystore, 'after close');
    assert.deepEqual(await settled(), []);
  });

  it('works with polling when asked (network filesystems)', async () => {
    await watch?.close();
    watch = await watchMidFiles(paths, (e) => events.push(e), { debounceMs: DEBOUNCE_MS, usePolling: true });
    for (let i = 0; i < 3; i += 1) await writeFileAtomic(paths.configXml, `<parameters><!-- poll ${i} --></parameters>\n`);
    await sleep(600);
    assert.deepEqual(types(await settled()), ['config-changed']);
    await writeFile(join(paths.agentDir, 'unrelated.txt'), 'x');
    await sleep(600);
    assert.deepEqual(await settled(), []);
  });
});
