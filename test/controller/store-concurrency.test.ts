import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { MIGRATIONS, openStore, storePath, type Store } from '../../controller/store/index.js';

/**
 * The CLI and the daemon use the database at once. These tests stand in for them with this
 * process and a separate node process: one running the store itself (openStore, a write
 * transaction held open), one holding the write lock with a raw connection. (Two stores on one
 * file inside one process share one lock per file — controller/store/sqlite.ts — so the daemon
 * has to be another process here, as it is in production.)
 */
describe('controller/store: CLI and daemon at once', () => {
  let dir: string;
  const open: Store[] = [];
  let child: ChildProcess | undefined;
  const storeFor = async (options: Parameters<typeof openStore>[1] = {}): Promise<Store> => {
    const store = await openStore(dir, options);
    open.push(store);
    return store;
  };
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-store-conc-')); });
  afterEach(async () => {
    child?.kill('SIGKILL');
    child = undefined;
    for (const s of open.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a reader sees committed data only, and is not blocked by an open write transaction', async () => {
    const cli = await storeFor({ actor: 'user:alice' });
    // The daemon (its own process, the real store) adds mid01, then updates it inside a write
    // transaction it keeps open until told to commit.
    const daemon = await holdStoreTransaction(dir);
    child = daemon.proc;
    // The CLI reads while the daemon holds the write lock: no wait, the last committed value.
    const started = Date.now();
    assert.equal((await cli.agents.require('mid01')).cluster, null);
    assert.ok(Date.now() - started < 1000);
    await daemon.commit();
    assert.equal((await cli.agents.require('mid01')).cluster, 'c1');
    assert.deepEqual((await cli.audit.list()).map((a) => a.actor), ['daemon']);
  });

  it('a writer waits for another process to release its write lock (busy_timeout), then succeeds', async () => {
    const cli = await storeFor();
    const holdMs = 800;
    child = await holdWriteLock(storePath(dir), holdMs);
    const started = Date.now();
    await cli.agents.add({ name: 'mid02', address: '10.0.0.2:7443' });
    const waited = Date.now() - started;
    assert.ok(waited >= holdMs * 0.5, `waited only ${waited} ms`);
    assert.ok(waited < 5000, `waited ${waited} ms`);
    // Both writes landed: the child's and ours.
    assert.deepEqual((await cli.agents.list()).map((a) => a.name), ['from-child', 'mid02']);
  });

  it('gives up with STORE_BUSY when the lock outlasts the busy timeout', async () => {
    const cli = await storeFor({ busyTimeoutMs: 150 });
    child = await holdWriteLock(storePath(dir), 3000);
    const started = Date.now();
    await assert.rejects(cli.agents.add({ name: 'mid03', address: '10.0.0.3:7443' }), (err: MidcertError) => err.code === 'STORE_BUSY');
    assert.ok(Date.now() - started >= 100);
    assert.equal(await cli.agents.get('mid03'), undefined);
  });

  it('four processes opening a fresh database at once apply the migrations exactly once', async () => {
    const script = `
      import { openStore } from './controller/store/index.js';
      const store = await openStore(process.argv[1]);
      process.stdout.write(String(store.migrations.applied.length));
      await store.close();
    `;
    const runs = [1, 2, 3, 4].map(() => new Promise<string>((resolve, reject) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: process.cwd() });
      let out = '';
      let err = '';
      proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      proc.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`))));
    }));
    const applied = (await Promise.all(runs)).map(Number);
    assert.deepEqual(applied.sort(), [0, 0, 0, MIGRATIONS.length]);
    const row = await (await storeFor()).sql.get<{ n: number | string }>('SELECT count(*) AS n FROM schema_migrations');
    assert.equal(Number(row?.n), MIGRATIONS.length);
  });
});

/**
 * Starts a node process that opens the store as the daemon, adds mid01 (committed), then sets
 * its cluster inside store.transaction() and holds that transaction open until commit().
 */
async function holdStoreTransaction(dataDir: string): Promise<{ proc: ChildProcess; commit(): Promise<void> }> {
  const script = `
    import { createInterface } from 'node:readline';
    import { openStore } from './controller/store/index.js';
    const store = await openStore(process.argv[1], { actor: 'daemon' });
    await store.agents.add({ name: 'mid01', address: '10.0.0.1:7443' });
    const lines = createInterface({ input: process.stdin });
    await store.transaction(async () => {
      const changed = await store.sql.run("UPDATE agents SET cluster = 'c1' WHERE name = ?", ['mid01']);
      process.stdout.write('locked ' + changed + '\\n');
      for await (const line of lines) if (line === 'commit') break;
    });
    await store.close();
    process.stdout.write('committed\\n');
    process.exit(0);
  `;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dataDir], { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  proc.stdout?.on('data', (d: Buffer) => { out += d.toString(); for (const w of waiters.splice(0)) w(); });
  proc.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const until = (text: string): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (out.includes(text)) resolve();
      else if (proc.exitCode !== null) reject(new Error(`store daemon exited ${proc.exitCode}: ${err}`));
      else waiters.push(check);
    };
    proc.once('exit', () => { for (const w of waiters.splice(0)) w(); });
    check();
  });
  await until('locked');
  assert.match(out, /locked 1\n/, 'the daemon changed one row inside its transaction');
  return {
    proc,
    async commit() {
      proc.stdin?.write('commit\n');
      await until('committed');
    },
  };
}

/** Starts a node process that takes the write lock, writes a row, and commits after `ms`. */
async function holdWriteLock(path: string, ms: number): Promise<ChildProcess> {
  const script = `
    import Database from 'better-sqlite3';
    const db = new Database(process.argv[1], { timeout: 5000 });
    db.exec('BEGIN IMMEDIATE');
    db.prepare("INSERT INTO agents (name, address, server_name, created_at, updated_at) VALUES ('from-child', 'x:1', 'x', 'now', 'now')").run();
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); process.exit(0); }, Number(process.argv[2]));
  `;
  // cwd is the repository so the child resolves better-sqlite3 from its node_modules.
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script, path, String(ms)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    proc.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('locked')) resolve(); });
    proc.on('exit', (code) => reject(new Error(`lock holder exited ${code}: ${err}`)));
  });
  return proc;
}
