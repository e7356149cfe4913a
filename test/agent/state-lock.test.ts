import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { MidcertError } from '../../common/errors.js';
import { acquireStateLock, parseProcStatStartTime, startTimeOf } from '../../agent/state-lock.js';

const TSX = resolve('node_modules/tsx/dist/esm/index.mjs');
const HOLDER = resolve('test/helpers/lock-holder.ts');

interface Answer { ok: boolean; pid: number; code?: string; message?: string }

/** A real node process running test/helpers/lock-holder.ts. */
class Holder {
  readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private wake: (() => void) | undefined;
  readonly exited: Promise<void>;

  constructor(stateDir: string, what: string) {
    this.child = spawn(process.execPath, ['--import', TSX, HOLDER, stateDir, what], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => { this.lines.push(line); this.wake?.(); });
    this.exited = new Promise((r) => this.child.once('exit', () => r()));
  }

  get pid(): number { return this.child.pid as number; }

  async line(timeoutMs = 30_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (Date.now() > until) throw new Error(`lock holder ${this.pid} said nothing in ${timeoutMs} ms`);
      await new Promise<void>((r) => { this.wake = r; setTimeout(r, 100); });
    }
    return this.lines.shift() as string;
  }

  async ready(): Promise<void> { assert.equal(await this.line(), 'ready'); }
  go(): void { this.child.stdin!.write('go\n'); }
  async answer(): Promise<Answer> { return JSON.parse(await this.line()) as Answer; }

  async release(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.stdin!.end('release\n');
    await this.exited;
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function bootId(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
}

/** Writes a lock as another process would have: stateDir/agent.lock/owner-<token>.json. */
async function plantLock(stateDir: string, owner: Record<string, unknown> | string): Promise<string> {
  const dir = join(stateDir, 'agent.lock');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `owner-${randomBytes(12).toString('hex')}.json`);
  await writeFile(file, typeof owner === 'string' ? owner : JSON.stringify(owner), { mode: 0o600 });
  return file;
}

async function lockOwners(stateDir: string): Promise<Record<string, unknown>[]> {
  const dir = join(stateDir, 'agent.lock');
  const names = await readdir(dir);
  return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(dir, n), 'utf8')) as Record<string, unknown>));
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => child.once('exit', r));
  return child.pid as number;
}

const isBusy = (pid: number) => (e: unknown): boolean => {
  assert.ok(e instanceof MidcertError, String(e));
  assert.equal(e.code, 'RENEWAL_BUSY', e.message);
  assert.match(e.message, new RegExp(`^another midcert-agent process holds the state-dir lock \\(pid ${pid}, started \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\): `));
  return true;
};

describe('agent state-dir lock (agent/state-lock.ts; Linux: /proc start time and boot id)', function () {
  this.timeout(120_000);
  let stateDir: string;
  const children: Holder[] = [];

  beforeEach(async () => { stateDir = await mkdtemp(join(tmpdir(), 'midcert-lock-')); });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.kill9()));
    await rm(stateDir, { recursive: true, force: true });
  });

  function holder(what: string): Holder {
    const h = new Holder(stateDir, what);
    children.push(h);
    return h;
  }

  it('reads field 22 (starttime) of /proc/<pid>/stat even when comm holds spaces and parentheses', () => {
    // Fields 3..52 after comm; field 22 is the 20th of them.
    const after = Array.from({ length: 50 }, (_, i) => (i === 0 ? 'S' : String(1000 + i)));
    after[22 - 3] = '987654321';
    for (const comm of ['node', 'my prog', 'a) b (c', ') S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 (']) {
      assert.equal(parseProcStatStartTime(`4242 (${comm}) ${after.join(' ')}\n`), '987654321', comm);
    }
    assert.equal(parseProcStatStartTime('4242 no-parenthesis S 1'), undefined);
    assert.equal(parseProcStatStartTime('4242 (short) S 1 2'), undefined);
  });

  it('takes over a lock naming pid 1 when pid 1 has another start time; refuses it when the start time matches', async () => {
    const startTime = await startTimeOf(1);
    assert.ok(startTime, 'pid 1 has a /proc entry');
    const base = { pid: 1, bootId: await bootId(), since: '2026-12-06T20:01:02Z', what: 'installing renewal r-123' };

    // Control: pid 1 as it really is (same start time, same boot) holds the lock.
    const real = await plantLock(stateDir, { ...base, startTime });
    await assert.rejects(acquireStateLock(stateDir, 'test'), (e: unknown) => isBusy(1)(e) && (e as Error).message.endsWith('(pid 1, started 2026-12-06T20:01:02Z): installing renewal r-123'));
    await rm(real);

    await plantLock(stateDir, { ...base, startTime: String(Number(startTime) + 1) });
    const release = await acquireStateLock(stateDir, 'installing renewal r-124');
    const owners = await lockOwners(stateDir);
    assert.equal(owners.length, 1, 'the stale owner file is gone');
    assert.equal(owners[0]?.pid, process.pid);
    assert.equal(owners[0]?.startTime, await startTimeOf(process.pid));
    assert.equal(owners[0]?.what, 'installing renewal r-124');
    await release();
    await assert.rejects(readdir(join(stateDir, 'agent.lock')), /ENOENT/, 'released: no lock left');
  });

  it('treats a lock written in a previous boot as stale (same pid and start time, other boot id)', async () => {
    const startTime = await startTimeOf(1);
    const current = await bootId();
    const other = current.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    await plantLock(stateDir, { pid: 1, startTime, bootId: other, since: '2026-12-06T20:01:02Z', what: 'installing renewal r-1' });
    const release = await acquireStateLock(stateDir, 'after reboot');
    assert.equal((await lockOwners(stateDir))[0]?.bootId, current);
    await release();
  });

  it('takes over a lock whose pid is dead', async () => {
    const pid = await deadPid();
    await plantLock(stateDir, { pid, startTime: '1', bootId: await bootId(), since: '2026-12-06T20:01:02Z', what: 'installing renewal r-9' });
    const release = await acquireStateLock(stateDir, 'test');
    const owners = await lockOwners(stateDir);
    assert.deepEqual(owners.map((o) => o.pid), [process.pid]);
    await release();
  });

  it('refuses a lock a live process holds (message names its pid, work and time); takes it after that process is killed -9', async () => {
    const child = holder('installing renewal r-123');
    await child.ready();
    child.go();
    assert.deepEqual(await child.answer(), { ok: true, pid: child.pid });
    await assert.rejects(acquireStateLock(stateDir, 'second'), (e: unknown) => isBusy(child.pid)(e) && (e as Error).message.endsWith(': installing renewal r-123'));
    // A second refusal: the refused attempt must not have disturbed the holder's lock.
    await assert.rejects(acquireStateLock(stateDir, 'third'), isBusy(child.pid));
    await child.kill9();
    const release = await acquireStateLock(stateDir, 'after kill -9');
    assert.deepEqual((await lockOwners(stateDir)).map((o) => o.pid), [process.pid]);
    await release();
  });

  for (const before of ['no lock', 'a stale lock (dead pid)', 'a malformed lock'] as const) {
    it(`of six processes arriving at once with ${before} in the state dir, exactly one takes the lock`, async () => {
      for (let round = 0; round < 3; round++) {
        if (before === 'a stale lock (dead pid)') await plantLock(stateDir, { pid: await deadPid(), since: '2026-12-06T20:01:02Z', what: 'old' });
        if (before === 'a malformed lock') await plantLock(stateDir, '{"pid": 1, "what": tr');
        const racers = Array.from({ length: 6 }, (_, i) => holder(`racer ${round}.${i}`));
        await Promise.all(racers.map((r) => r.ready()));
        for (const r of racers) r.go();
        const answers = await Promise.all(racers.map((r) => r.answer()));
        const winners = answers.filter((a) => a.ok);
        assert.equal(winners.length, 1, JSON.stringify(answers));
        const winner = winners[0] as Answer;
        for (const a of answers.filter((x) => !x.ok)) {
          assert.equal(a.code, 'RENEWAL_BUSY', JSON.stringify(a));
          assert.match(a.message ?? '', new RegExp(`\\(pid ${winner.pid}, started .*\\): racer ${round}\\.\\d$`));
        }
        assert.deepEqual((await lockOwners(stateDir)).map((o) => o.pid), [winner.pid]);
        await Promise.all(racers.map((r) => r.release()));
        children.splice(0);
        await assert.rejects(readdir(join(stateDir, 'agent.lock')), /ENOENT/, 'every racer released');
      }
    });
  }

  it('treats a malformed lock as stale and never shows its content', async () => {
    const marker = `DISTINCT-${randomBytes(6).toString('hex')}`;
    // Would name live pid 1 if read leniently; lacks "since": malformed.
    await plantLock(stateDir, { pid: 1, what: marker });
    await plantLock(stateDir, `\u0000\u00ff${marker}`);
    await writeFile(join(stateDir, 'agent.lock', 'stray'), marker);
    const release = await acquireStateLock(stateDir, 'test');
    const dir = join(stateDir, 'agent.lock');
    const names = await readdir(dir);
    assert.equal(names.length, 1);
    assert.doesNotMatch(await readFile(join(dir, names[0] as string), 'utf8'), new RegExp(marker));
    // A contender is refused with our description, not the malformed file's.
    const child = holder('contender');
    await child.ready();
    child.go();
    const answer = await child.answer();
    assert.equal(answer.code, 'RENEWAL_BUSY');
    assert.doesNotMatch(answer.message ?? '', new RegExp(marker));
    assert.match(answer.message ?? '', new RegExp(`\\(pid ${process.pid}, started .*\\): test$`));
    await release();

    // The same for a garbage regular file where the lock belongs.
    await rm(dir, { recursive: true, force: true }); // released above: normally gone already
    await writeFile(dir, `${marker}\n\u0000`);
    const again = await acquireStateLock(stateDir, 'test');
    assert.deepEqual((await lockOwners(stateDir)).map((o) => o.pid), [process.pid]);
    await again();
  });

  it('a release never removes a lock someone else took over meanwhile', async () => {
    const first = await acquireStateLock(stateDir, 'abandoned operation');
    // Same process again: the first lock counts as abandoned and is taken over.
    const second = await acquireStateLock(stateDir, 'current operation');
    await first(); // late release of the abandoned one
    const child = holder('contender');
    await child.ready();
    child.go();
    const refused = await child.answer();
    assert.equal(refused.ok, false);
    assert.match(refused.message ?? '', new RegExp(`\\(pid ${process.pid}, started .*\\): current operation$`));
    await second();
    child.go();
    assert.equal((await child.answer()).ok, true, 'free once the current holder released it');
  });

  it('handles the lock file of earlier versions ("pid\\nwhat\\n"): stale after a reboot or when its pid is dead, held otherwise', async () => {
    const legacy = join(stateDir, 'agent.lock');
    // Written before pid 1 started, i.e. in an earlier boot: pid 1 is not its writer.
    await writeFile(legacy, '1\ninstalling\n');
    await utimes(legacy, new Date('2001-01-01T00:00:00Z'), new Date('2001-01-01T00:00:00Z'));
    const release = await acquireStateLock(stateDir, 'test');
    await release();

    await writeFile(legacy, `${await deadPid()}\ninstalling\n`);
    await (await acquireStateLock(stateDir, 'test'))();

    const child = holder('unused');
    await child.ready();
    await writeFile(legacy, `${child.pid}\ninstalling (old version)\n`);
    await assert.rejects(acquireStateLock(stateDir, 'test'), (e: unknown) => isBusy(child.pid)(e) && (e as Error).message.endsWith(': installing (old version)'));
    await child.kill9();
    await (await acquireStateLock(stateDir, 'test'))();
  });
});
