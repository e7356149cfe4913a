import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startPostgres, type PgDatabase } from '../helpers/postgres.js';
import { run, type RunResult } from '../helpers/run.js';

/**
 * Many controllers, one fleet, the way an operator runs them: a lab fleet whose controller state
 * is moved into a real PostgreSQL with `midcert store migrate`, then two `midcert serve` on it,
 * the CLI beside them, and a leader killed with SIGKILL mid-renewal.
 */
const LAB = resolve('bin/midcert-lab');
const MIDCERT = resolve('bin/midcert');
const MIDS = 3;
const LEASE_SECONDS = 4;

interface Lab {
  mids: { name: string; home: string }[];
  controller: { dataDir: string };
}

interface Serve {
  child: ChildProcess;
  metricsPort: number;
  output: () => string;
}

describe('end to end: several controllers on one PostgreSQL (job ownership, leases, leader election)', function () {
  this.timeout(600_000);
  let dir: string;
  let lab: Lab;
  let db: PgDatabase;
  const serves: Serve[] = [];
  const midcert = (...args: string[]): Promise<RunResult> => run(MIDCERT, ['--data-dir', lab.controller.dataDir, ...args], { timeoutMs: 300_000 });
  const json = async (...args: string[]): Promise<any> => {
    const res = await midcert(...args, '--json');
    try {
      return { code: res.code, ...JSON.parse(res.stdout) };
    } catch {
      throw new Error(`midcert ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
    }
  };
  // Installs per MID, counted on the hosts: the successful outcomes in each agent's journal history.
  const installs = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(lab.mids.map(async (m) => {
    const text = await readFile(join(dir, 'agents', m.name, 'state', 'history.json'), 'utf8').catch(() => '[]');
    return [m.name, (JSON.parse(text) as { ok: boolean }[]).filter((r) => r.ok).length] as [string, number];
  })));
  const startServe = async (): Promise<Serve> => {
    const metricsPort = await freePort();
    let output = '';
    const child = spawn(MIDCERT, ['--data-dir', lab.controller.dataDir, 'serve', '--metrics-address', `127.0.0.1:${metricsPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
    const serve = { child, metricsPort, output: () => output };
    serves.push(serve);
    return serve;
  };
  const leaderPid = async (): Promise<number | undefined> => {
    const status = await json('store', 'status');
    const m = /\(pid (\d+) /.exec(status.leader?.owner ?? '');
    return m ? Number(m[1]) : undefined;
  };
  const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${serves.map((s) => s.output().slice(-3000)).join('\n---\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-e2e-ha-'));
    const up = await run(LAB, ['up', '--dir', dir, '--mids', String(MIDS), '--with-agents', '--time-scale', '0.0125', '--json'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    lab = JSON.parse(up.stdout) as Lab;
    db = await (await startPostgres()).createDatabase('ha');
    // The lab's install (SQLite in the data dir) moves to PostgreSQL, as an operator would move theirs.
    const moved = await json('store', 'migrate', '--from', `sqlite:${join(lab.controller.dataDir, 'midcert.db')}`, '--to', db.url, '--password-file', db.passwordFile);
    assert.equal(moved.code, 0, JSON.stringify(moved));
    assert.equal(moved.rows.agents, MIDS);
    const configFile = join(lab.controller.dataDir, 'controller.yaml');
    const config = parseYaml(await readFile(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    config.store = { url: db.url, passwordFile: db.passwordFile };
    config.serve = { ...config.serve, leaseSeconds: LEASE_SECONDS, intervalSeconds: 3600, jitterSeconds: 0 };
    // One MID at a time, so the leader is killed with the job half done.
    config.rotation = { ...config.rotation, canary: 0, concurrency: 1 };
    await writeFile(configFile, stringifyYaml(config), { mode: 0o600 });
    // The old file is set aside: from now on every command must read PostgreSQL.
    await rename(join(lab.controller.dataDir, 'midcert.db'), join(lab.controller.dataDir, 'midcert.db.migrated'));
    const status = await json('store', 'status');
    assert.equal(status.backend, 'postgresql');
    assert.deepEqual((await json('agents', 'list')).agents.map((a: { name: string }) => a.name).sort(), lab.mids.map((m) => m.name).sort());
  });

  after(async () => {
    for (const s of serves) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    if (dir) await run(LAB, ['down', '--dir', dir], { timeoutMs: 120_000 });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('one serve leads; kill -9 it mid-renewal and the follower takes over within serve.leaseSeconds, resuming the job without rotating any MID twice', async () => {
    const before = await installs();
    const a = await startServe();
    const leader = await until('serve A to lead', async () => ((await leaderPid()) === a.child.pid ? true : undefined));
    assert.ok(leader);
    const b = await startServe();
    // The follower answers /metrics while A leads, and says it does not lead.
    const followerMetrics = await until('the follower\'s /metrics', async () => (await fetch(`http://127.0.0.1:${b.metricsPort}/metrics`).then((r) => r.text()).catch(() => undefined)));
    assert.match(followerMetrics, /^midcert_controller_leader 0$/m);
    assert.match(await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text(), /^midcert_controller_leader 1$/m);
    // Every lab MID is expiring: A renews them one by one. Kill it once one is done and the rest are not.
    const job = await until('A\'s renewal job to be half done', async () => {
      const history = await json('history', '--limit', '1');
      const j = history.jobs[0];
      const done = j?.agents.filter((x: { state: string }) => x.state === 'succeeded').length ?? 0;
      return j?.state === 'running' && done >= 1 && done < MIDS ? j : undefined;
    });
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => a.child.once('exit', r));
    await until('B to lead', async () => ((await leaderPid()) === b.child.pid ? true : undefined), LEASE_SECONDS * 1000 + 5000);
    const ledAfterMs = Date.now() - killedAt;
    // The job itself passes to B once A's lease has lapsed (the store is its journal).
    await until('B to own the killed job', async () => {
      const status = await json('store', 'status');
      const j = status.unfinishedJobs.find((x: { id: number }) => x.id === job.id);
      return !j || j.owner.includes(`pid ${b.child.pid} `) ? true : undefined;
    }, LEASE_SECONDS * 1000 + 5000);
    const ownedAfterMs = Date.now() - killedAt;
    const resumed = await until('the killed job to finish under B', async () => {
      const j = (await json('history', '--limit', '5')).jobs.find((x: { id: number }) => x.id === job.id);
      return j && j.state !== 'running' ? j : undefined;
    });
    assert.equal(resumed.state, 'succeeded', JSON.stringify(resumed));
    assert.ok(ledAfterMs <= LEASE_SECONDS * 1000 + 1500, `B led ${ledAfterMs} ms after the kill`);
    assert.ok(ownedAfterMs <= LEASE_SECONDS * 1000 + 1500, `B took the job ${ownedAfterMs} ms after the kill`);
    assert.match(b.output(), /resumed unfinished jobs/);
    const after = await installs();
    for (const m of lab.mids) assert.equal(after[m.name]! - before[m.name]!, 1, `${m.name} installed exactly once: ${JSON.stringify({ before, after })}`);
  });

  it('the CLI rotates a MID while serve runs, and of two CLIs on one MID the second is refused with JOB_CONFLICT naming the first', async () => {
    // The bug this issue began with: serve took the CLI's live job for an abandoned one.
    const single = await json('rotate', '--agent', lab.mids[0]!.name, '--force');
    assert.equal(single.code, 0, JSON.stringify(single));
    assert.equal(single.summary.succeeded, 1, JSON.stringify(single.results));
    const name = lab.mids[1]!.name;
    const first = spawn(MIDCERT, ['--data-dir', lab.controller.dataDir, 'rotate', '--agent', name, '--force', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstOut = '';
    first.stdout?.on('data', (d: Buffer) => { firstOut += d.toString(); });
    await until('the first CLI to own a job', async () => {
      const status = await json('store', 'status');
      return status.unfinishedJobs.find((j: { owner: string }) => j.owner.includes(`pid ${first.pid} `));
    });
    const second = await midcert('rotate', '--agent', name, '--force');
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, new RegExp(`\\[JOB_CONFLICT\\] ${name} is in job \\d+, run by user:\\S+ \\(pid ${first.pid} on `));
    const firstCode = await new Promise<number | null>((r) => first.once('exit', r));
    assert.equal(firstCode, 0, firstOut);
    assert.equal(JSON.parse(firstOut).summary.succeeded, 1);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
