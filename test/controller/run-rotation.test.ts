import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { createCaAdapter } from '../../controller/ca/index.js';
import { initLocalCa } from '../../controller/ca/local.js';
import type { CaAdapter } from '../../controller/ca/adapter.js';
import { initDataDir } from '../../controller/data-dir.js';
import type { AgentPort } from '../../controller/orchestrator/ports.js';
import type { RotationOptions, RotationReport } from '../../controller/orchestrator/rotate-agent.js';
import { preparingLimit, runRotation } from '../../controller/orchestrator/run-rotation.js';
import { openStore, type Agent, type Store } from '../../controller/store/index.js';
import { firstCertificateSha256 } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { generateKey } from '../../pki/keys.js';

const DAY = 86_400_000;

/** What the fake fleet does and what it saw, in order. */
interface Fleet {
  log: string[];
  /** Per agent: days its leaf has left (default 1), or 'down'. */
  leaf: Map<string, number | 'down'>;
  /** Runs inside the agent's first status call (the selection's), before it answers. */
  onStatus: Map<string, () => Promise<void>>;
  /** Every install waits for this before it answers. */
  installsHeld: Promise<void>;
  /** Every PrepareRenewal waits for this before it answers. */
  preparesHeld: Promise<void>;
}

function dialer(fleet: Fleet, csrPem: string): (agent: Agent) => AgentPort {
  return (agent) => ({
    status: async () => {
      const hook = fleet.onStatus.get(agent.name);
      fleet.onStatus.delete(agent.name);
      await hook?.();
      fleet.log.push(`status ${agent.name}`);
      const leaf = fleet.leaf.get(agent.name) ?? 1;
      if (leaf === 'down') throw Object.assign(new Error('connection refused'), { code: 'UNAVAILABLE' });
      return { midName: agent.name, leafSha256: `old-${agent.name}`, leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + leaf * DAY).toISOString(), serviceActive: true, instanceUrl: '' };
    },
    prepare: async () => {
      fleet.log.push(`prepare ${agent.name}`);
      await fleet.preparesHeld;
      return { csrPem };
    },
    install: async (_id, certificatePem) => {
      fleet.log.push(`install ${agent.name}`);
      await fleet.installsHeld;
      return { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: firstCertificateSha256(Buffer.from(certificatePem)) ?? '' };
    },
    enableMutualAuth: async () => { throw new Error('unused'); },
    rollback: async () => { throw new Error('unused'); },
    renewal: async () => { throw new Error('unused'); },
    close: () => undefined,
  });
}

/** A promise the test releases, or a safety timer does, so a failed assertion never leaves the rotation hanging. */
function held(safetyMs = 5000): { promise: Promise<void>; release(): void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => { resolve = r; });
  const timer = setTimeout(() => resolve(), safetyMs);
  return { promise, release: () => { clearTimeout(timer); resolve(); } };
}

const options: RotationOptions = { force: false, expiringWithinDays: 30, canary: 1, batch: 2, maxFailures: 0, concurrency: 2, dryRun: false, caTimeoutMs: 5000, caPollMs: 10, upTimeoutMs: 5000 };
const NAMES = ['mid01', 'mid02', 'mid03', 'mid04', 'mid05', 'mid06', 'mid07'];

describe('controller/orchestrator/run-rotation: the first wave starts while the rest are still asked', () => {
  let dir: string;
  let store: Store;
  let ca: CaAdapter;
  let csrPem: string;
  let fleet: Fleet;
  const rotate = (opts: Partial<RotationOptions> = {}, on: Store = store): Promise<RotationReport> =>
    on.agents.list().then((agents) => runRotation({ store: on, dial: dialer(fleet, csrPem), ca, instance: undefined, onEvent: () => undefined }, agents, { ...options, ...opts }));

  before(async () => {
    csrPem = buildCsr(await generateKey(), { subject: 'CN=mid' });
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-run-rotation-'));
    await initDataDir(dir);
    await initLocalCa(dir);
    store = await openStore(dir, { actor: 'test' });
    ca = await createCaAdapter({ type: 'local', timeoutSeconds: 30, validityDays: 30 }, { dataDir: dir });
    for (const name of NAMES) await store.agents.add({ name, address: `${name}.example:7443` });
    fleet = { log: [], leaf: new Map<string, number | 'down'>([['mid03', 'down'], ['mid05', 200]]), onStatus: new Map(), installsHeld: Promise.resolve(), preparesHeld: Promise.resolve() };
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('plans, stores and reports exactly what the dry run planned', async () => {
    const dry = await rotate({ dryRun: true });
    const report = await rotate();
    // Reasons compared without the day count, which rounds down a moment later.
    const plain = (r: RotationReport) => ({ waves: r.plan.waves, skipped: r.plan.skipped.map((s) => [s.name, s.reason.replace(/\d+ days/, 'N days')]) });
    assert.deepEqual(plain(report), plain(dry));
    assert.deepEqual(report.plan.waves, [['mid01'], ['mid02', 'mid04'], ['mid06', 'mid07']]);
    assert.deepEqual(plain(report).skipped, [['mid03', 'unreachable: Error: connection refused'], ['mid05', 'not-expiring (N days left)']]);
    assert.deepEqual(report.summary, { succeeded: 5, failed: 0, skipped: 2 });
    assert.deepEqual(report.results.map((r) => [r.name, r.state]), [['mid01', 'succeeded'], ['mid02', 'succeeded'], ['mid04', 'succeeded'], ['mid06', 'succeeded'], ['mid07', 'succeeded'], ['mid03', 'skipped'], ['mid05', 'skipped']]);
    const rows = await store.jobAgents.list(report.jobId as number);
    assert.deepEqual(rows.map((r) => [r.agentName, r.wave, r.state]), [['mid01', 0, 'succeeded'], ['mid02', 1, 'succeeded'], ['mid04', 1, 'succeeded'], ['mid06', 2, 'succeeded'], ['mid07', 2, 'succeeded']]);
    assert.equal((await store.jobs.require(report.jobId as number)).state, 'succeeded');
  });

  it('installs the canary before the last MID has answered its status', async () => {
    const status = held(3000);
    fleet.onStatus.set('mid07', () => status.promise);
    const installed = (name: string) => fleet.log.indexOf(`install ${name}`);
    const waitForCanary = (async () => { while (installed('mid01') < 0) await new Promise((r) => setTimeout(r, 10)); status.release(); })();
    const report = await rotate();
    await waitForCanary;
    assert.ok(installed('mid01') >= 0 && installed('mid01') < fleet.log.indexOf('status mid07'), fleet.log.join(' | '));
    assert.equal(report.summary.succeeded, 5);
    assert.ok(installed('mid02') > fleet.log.indexOf('status mid07'), 'the second wave waited for the whole plan');
  });

  it('asks a large first wave as it rotates: at most `askAhead` MIDs ahead of the rotations', async () => {
    for (const name of ['mid08', 'mid09', 'mid10', 'mid11']) await store.agents.add({ name, address: `${name}.example:7443` });
    const installs = held();
    fleet.installsHeld = installs.promise;
    const asked = () => fleet.log.filter((l) => l.startsWith('status ')).length;
    const installing = () => fleet.log.filter((l) => l.startsWith('install ')).length;
    const running = rotate({ canary: 0, batch: 20, concurrency: 2, askAhead: 2 });
    while (installing() < 2) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 150)); // time enough to ask everyone, were it not held back
    // Two installing (mid01, mid02), two answered and waiting for a slot (mid04, mid06); mid03
    // (down) and mid05 (not due) were asked and skipped, so they held no place. No one else asked yet.
    assert.deepEqual(fleet.log.filter((l) => l.startsWith('status ')), ['status mid01', 'status mid02', 'status mid03', 'status mid04', 'status mid05', 'status mid06'], fleet.log.join(' | '));
    installs.release();
    const report = await running;
    assert.equal(asked(), 11);
    assert.deepEqual(report.summary, { succeeded: 9, failed: 0, skipped: 2 });
    assert.deepEqual(report.plan.waves, [['mid01', 'mid02', 'mid04', 'mid06', 'mid07', 'mid08', 'mid09', 'mid10', 'mid11']]);
  });

  it('asks a first wave of fewer than 64 at once, whatever the concurrency: a job killed early holds all of it', async () => {
    const installs = held();
    fleet.installsHeld = installs.promise;
    const running = rotate({ canary: 0, batch: 20, concurrency: 1 });
    while (!fleet.log.includes('install mid01')) await new Promise((r) => setTimeout(r, 5));
    const job = (await store.jobs.list({ states: ['running'] }))[0];
    for (let i = 0; i < 100 && job && (await store.jobAgents.list(job.id)).length < 5; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fleet.log.filter((l) => l.startsWith('status ')).length, 7);
    assert.deepEqual((await store.jobAgents.list(job!.id)).map((r) => r.agentName), ['mid01', 'mid02', 'mid04', 'mid06', 'mid07']);
    installs.release();
    assert.deepEqual((await running).summary, { succeeded: 5, failed: 0, skipped: 2 });
  });

  it('lets at most `preparing` MIDs prepare at once, though slots are free; each gives its place back as its install starts', async () => {
    const prepares = held();
    fleet.preparesHeld = prepares.promise;
    const installs = held();
    fleet.installsHeld = installs.promise;
    const seen = (what: string) => fleet.log.filter((l) => l.startsWith(`${what} `));
    const running = rotate({ canary: 0, batch: 20, concurrency: 8, preparing: 2 });
    while (seen('prepare').length < 2) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 150)); // time enough for the other three to start, were they not held back
    assert.deepEqual(seen('prepare'), ['prepare mid01', 'prepare mid02'], fleet.log.join(' | '));
    prepares.release();
    // Installs still held: the permits came back with each install's start, so all five prepared.
    while (seen('install').length < 5) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seen('prepare'), ['prepare mid01', 'prepare mid02', 'prepare mid04', 'prepare mid06', 'prepare mid07']);
    installs.release();
    assert.deepEqual((await running).summary, { succeeded: 5, failed: 0, skipped: 2 });
  });

  it('counts a first-wave MID as asked ahead until its install is on its way: no new asks compete with its preparation', async () => {
    const prepares = held();
    fleet.preparesHeld = prepares.promise;
    const running = rotate({ canary: 0, batch: 20, concurrency: 8, askAhead: 2 });
    while (fleet.log.filter((l) => l.startsWith('prepare ')).length < 2) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 150)); // time enough to ask more, were the two preparing not counted
    assert.deepEqual(fleet.log.filter((l) => l.startsWith('status ')), ['status mid01', 'status mid02'], fleet.log.join(' | '));
    prepares.release();
    assert.deepEqual((await running).summary, { succeeded: 5, failed: 0, skipped: 2 });
  });

  it('gives a quarter of the slots, at least 4, to MIDs preparing', () => {
    assert.deepEqual([1, 16, 17, 50, 200].map(preparingLimit), [4, 4, 5, 13, 50]);
  });

  it('after the first wave, asks the rest at full speed: later waves are planned from every answer', async () => {
    const installs = held();
    fleet.installsHeld = installs.promise;
    const running = rotate({ canary: 1, batch: 2, concurrency: 2, askAhead: 2 });
    while (!fleet.log.includes('install mid01')) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(fleet.log.filter((l) => l.startsWith('status ')).length, 7, 'the canary installs while everyone else is asked');
    installs.release();
    assert.deepEqual((await running).summary, { succeeded: 5, failed: 0, skipped: 2 });
  });

  it('stops after a failed canary and lists every MID it did not start as skipped', async () => {
    const refusing: CaAdapter = { ...ca, submit: async () => ({ kind: 'rejected', reason: 'no' }) };
    const agents = await store.agents.list();
    const report = await runRotation({ store, dial: dialer(fleet, csrPem), ca: refusing, instance: undefined, onEvent: () => undefined }, agents, options);
    assert.equal(report.stoppedEarly, true);
    assert.match(report.reason, /canary mid01 failed/);
    assert.deepEqual(report.results.filter((r) => r.state === 'skipped' && r.reason?.startsWith('not started')).map((r) => r.name), ['mid02', 'mid04', 'mid06', 'mid07']);
    const rows = await store.jobAgents.list(report.jobId as number);
    assert.deepEqual(rows.map((r) => [r.agentName, r.state]), [['mid01', 'failed'], ['mid02', 'skipped'], ['mid04', 'skipped'], ['mid06', 'skipped'], ['mid07', 'skipped']]);
  });

  it('skips, naming the other process, a MID that process claimed while this one was still asking', async () => {
    const other = await openStore(dir, { actor: 'user:bob' });
    try {
      fleet.onStatus.set('mid06', async () => { await other.jobs.create({ kind: 'rotate', agents: ['mid07'] }); });
      const report = await rotate({ canary: 0, batch: 10 });
      assert.deepEqual(report.summary, { succeeded: 4, failed: 0, skipped: 3 });
      const mid07 = report.results.find((r) => r.name === 'mid07');
      assert.equal(mid07?.state, 'skipped');
      assert.match(mid07?.reason ?? '', /^not joined: \[JOB_CONFLICT\] mid07 is in job \d+, run by user:bob/);
      assert.deepEqual(report.plan.waves, [['mid01', 'mid02', 'mid04', 'mid06']]);
      assert.equal(fleet.log.includes('install mid07'), false);
    } finally {
      await other.close();
    }
  });

  it('a fleet with clusters plans from every answer first, keeping a member of each cluster up', async () => {
    for (const name of NAMES) await store.agents.update(name, { cluster: 'east' });
    let asked = 0;
    fleet.onStatus.set('mid07', async () => { asked = fleet.log.filter((l) => l.startsWith('install')).length; });
    const report = await rotate({ canary: 0, batch: 10 });
    assert.equal(asked, 0, 'no install before every MID answered');
    assert.deepEqual(report.plan.waves, [['mid01', 'mid02', 'mid04', 'mid06'], ['mid07']]);
  });

  it('fails as a whole when the store refuses the job, leaving no connection open', async () => {
    const open = new Set<string>();
    const dial = dialer(fleet, csrPem);
    const counting = (agent: Agent): AgentPort => {
      const port = dial(agent);
      open.add(agent.name);
      return { ...port, close: () => { open.delete(agent.name); } };
    };
    const failing = Object.create(store) as Store;
    Object.defineProperty(failing, 'jobs', { value: { ...store.jobs, create: async () => { throw new MidcertError('STORE_BUSY', 'database is locked'); } } });
    await assert.rejects(runRotation({ store: failing, dial: counting, ca, instance: undefined, onEvent: () => undefined }, await store.agents.list(), options), /database is locked/);
    assert.deepEqual([...open], []);
    assert.equal(fleet.log.some((l) => l.startsWith('install')), false);
  });

  it('creates no job when nothing is due', async () => {
    for (const name of NAMES) fleet.leaf.set(name, 200);
    const report = await rotate();
    assert.equal(report.jobId, null);
    assert.equal(report.reason, 'nothing to rotate');
    assert.equal((await store.jobs.list()).length, 0);
  });
});
