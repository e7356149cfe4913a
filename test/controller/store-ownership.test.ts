import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MidcertError } from '../../common/errors.js';
import { openStore, type Store, type StoreOptions } from '../../controller/store/index.js';
import { pgAvailable, startPostgres } from '../helpers/postgres.js';

const code = (expected: string, text?: RegExp) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  if (text) assert.match(err.message, text);
  return true;
};
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Job ownership and leader election, the same suite on both databases: two Store objects are
 * two controller processes (each has its own owner id and lease), as the CLI and serve are.
 */
for (const backend of ['sqlite', 'postgresql'] as const) {
  describe(`controller/store: job ownership and leases (${backend})`, function () {
    this.timeout(30_000);
    let dir: string;
    let config: StoreOptions['config'];
    const opened: Store[] = [];
    const open = async (options: StoreOptions = {}): Promise<Store> => {
      const store = await openStore(dir, { config, ...options });
      opened.push(store);
      return store;
    };

    before(function () {
      if (backend === 'postgresql') assert.ok(pgAvailable(), 'PostgreSQL server binaries are missing: run sudo make deps (Debian package postgresql)');
    });
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'midcert-own-'));
      if (backend === 'postgresql') {
        const db = await (await startPostgres()).createDatabase('own');
        config = { url: db.url, passwordFile: db.passwordFile };
      } else config = undefined;
      const setup = await open({ actor: 'user:setup' });
      for (const name of ['mid01', 'mid02']) await setup.agents.add({ name, address: `${name}.example:7443` });
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses a second process the MID with JOB_CONFLICT naming the owner (pid, host, start time, lease)', async () => {
      const cli = await open({ actor: 'user:alice' });
      const daemon = await open({ actor: 'daemon' });
      const job = await cli.jobs.create({ kind: 'rotate', agents: ['mid01'] });
      await cli.jobs.transition(job.id, 'running');
      assert.equal(job.ownerId, cli.owner.id);
      const hostPart = hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await assert.rejects(daemon.jobs.create({ kind: 'rotate', agents: ['mid02', 'mid01'] }),
        code('JOB_CONFLICT', new RegExp(`mid01 is in job ${job.id}, run by user:alice \\(pid ${process.pid} on ${hostPart}, started .*; lease until `)));
      // The second process cannot move the first one's job or its MIDs either (fencing).
      await assert.rejects(daemon.jobAgents.advance(job.id, 'mid01', 'preparing'), code('JOB_CONFLICT', /run by user:alice/));
      await assert.rejects(daemon.jobs.transition(job.id, 'cancelled'), code('JOB_CONFLICT'));
      await assert.rejects(daemon.jobSteps.start(job.id, 'mid01', 'prepare'), code('JOB_CONFLICT'));
      const takeOver = await daemon.jobs.takeOver(job.id);
      assert.equal(takeOver.taken, false);
      assert.equal(!takeOver.taken && takeOver.heldBy?.pid, process.pid);
      // The other MID is free: the refused create left nothing behind.
      const other = await daemon.jobs.create({ kind: 'rotate', agents: ['mid02'] });
      assert.equal(other.ownerId, daemon.owner.id);
      assert.equal((await cli.jobAgents.advance(job.id, 'mid01', 'preparing')).ownerId, cli.owner.id);
    });

    it('hands a job over only once its owner stopped renewing the lease, and fences the old owner out', async () => {
      const killed = await open({ actor: 'user:alice', leaseSeconds: 1 });
      const job = await killed.jobs.create({ kind: 'rotate', agents: ['mid01'] });
      await killed.jobs.transition(job.id, 'running');
      const lastWritten = await killed.jobAgents.advance(job.id, 'mid01', 'preparing');
      // While the owner renews (every lease / 3), nobody takes the job, however long they wait.
      const next = await open({ actor: 'daemon', leaseSeconds: 1 });
      await sleep(1500);
      assert.equal((await next.jobs.takeOver(job.id)).taken, false);
      // "kill -9": the renewals stop; the lease lapses within a lease of the last renewal.
      killed.owner.stopRenewals();
      await sleep(1300);
      const taken = await next.jobs.takeOver(job.id);
      assert.equal(taken.taken, true);
      assert.equal(taken.taken && taken.from?.pid, process.pid);
      // The job resumes where it was under its new owner ...
      const row = await next.jobAgents.advance(job.id, 'mid01', 'csr_ready', { renewalId: 'r1', csrPem: CSR });
      assert.equal(row.ownerId, next.owner.id);
      // ... and the old owner, had it only stalled, can no longer write, not even from the row it last wrote.
      await assert.rejects(killed.jobAgents.advance(job.id, 'mid01', 'failed', { errorCode: 'X' }), code('JOB_CONFLICT', /lease on job \d+ expired|run by daemon/));
      await assert.rejects(killed.jobAgents.advanceFrom(lastWritten, () => [{ to: 'failed', patch: { errorCode: 'X' } }]), code('JOB_CONFLICT'));
      // The new owner writes from its own last row in one statement; from a stale one it plans again from the row as it is.
      const issued = await next.jobAgents.advanceFrom(row, () => [{ to: 'issued', patch: { certificatePem: CERT } }]);
      assert.equal(issued.state, 'issued');
      const replanned: string[] = [];
      const published = await next.jobAgents.advanceFrom(row, (current) => { replanned.push(current.state); return current.state === 'issued' ? [{ to: 'published' }] : [{ to: 'issued', patch: { certificatePem: CERT } }]; });
      assert.deepEqual(replanned, ['csr_ready', 'issued'], 'planned from the stale row, then again from the stored one');
      assert.equal(published.state, 'published');
      assert.deepEqual((await next.audit.list({ action: 'job.take-over' })).map((a) => a.target), [`job:${job.id}`]);
      // A third process cannot take it from the live new owner.
      const third = await open({ actor: 'user:bob' });
      assert.equal((await third.jobs.takeOver(job.id)).taken, false);
    });

    it('of several processes taking one abandoned job at once, exactly one gets it', async () => {
      const gone = await open({ actor: 'user:alice', leaseSeconds: 1 });
      const job = await gone.jobs.create({ kind: 'rotate', agents: ['mid01'] });
      await gone.jobs.transition(job.id, 'running');
      await gone.close();
      const racers = await Promise.all([1, 2, 3, 4].map((i) => open({ actor: `daemon-${i}` })));
      const outcomes = await Promise.all(racers.map((s) => s.jobs.takeOver(job.id)));
      assert.equal(outcomes.filter((o) => o.taken).length, 1);
    });

    it('a closed store ends its lease at once: what it left unfinished is resumable without waiting', async () => {
      const serve = await open({ actor: 'daemon', leaseSeconds: 60 });
      const job = await serve.jobs.create({ kind: 'rotate', agents: ['mid01'] });
      await serve.jobs.transition(job.id, 'running');
      await serve.close();
      const next = await open({ actor: 'daemon' });
      assert.equal((await next.jobs.takeOver(job.id)).taken, true);
      // A job owned by nobody (from before ownership existed) is resumable too.
      await next.sql.write(() => next.sql.run('UPDATE jobs SET owner_id = NULL WHERE id = ?', [job.id]));
      const again = await open({ actor: 'user:bob' });
      assert.equal((await again.jobs.takeOver(job.id)).taken, true);
    });

    it('elects one serve leader; another takes over when the leader goes away', async () => {
      const a = await open({ actor: 'daemon', leaseSeconds: 1 });
      const b = await open({ actor: 'daemon', leaseSeconds: 1 });
      const la = a.leadership();
      const lb = b.leadership();
      assert.equal(await la.tick(), true);
      assert.equal(await lb.tick(), false);
      await sleep(1200);
      // The leader keeps leading as long as it ticks, past its first lease.
      assert.equal(await la.tick(), true);
      assert.equal(await lb.tick(), false);
      const current = await lb.current();
      assert.equal(current?.ownerId, a.owner.id);
      await la.release();
      assert.equal(await lb.tick(), true);
      assert.equal((await la.current())?.ownerId, b.owner.id);
      await lb.release();
    });
  });
}

