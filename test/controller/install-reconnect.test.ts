import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectAgent, type AgentClient } from '../../proto/agent-client.js';
import type { CaPort, InstancePort } from '../../controller/orchestrator/ports.js';
import type { RotationDeps, RotationOptions } from '../../controller/orchestrator/rotate-agent.js';
import { runRotation } from '../../controller/orchestrator/run-rotation.js';
import type { RotationEvent } from '../../controller/orchestrator/rotate-one.js';
import { agentPort } from '../../controller/orchestrator/wiring.js';
import { openStore, type Agent, type Store } from '../../controller/store/index.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import { RenewalPhase } from '../../proto/gen/midcert/v1/agent_pb.js';
import { startMidWorld, waitFor, type MidWorld } from '../helpers/mid-world.js';

const AGENT = resolve('bin/midcert-agent');
const TSX = resolve('node_modules/tsx/dist/esm/index.mjs');
const CTL = resolve('lab/mid/ctl-main.ts');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/**
 * Issue 16 item 4, "the record must match the host": the agent daemon (a real process) is killed
 * with SIGKILL while the MID it just restarted is being health-checked. The controller (the real
 * orchestrator, store and gRPC wiring, in this process) must not record UNAVAILABLE when the
 * agent comes back and finishes the install: it re-dials, asks GetRenewal, and records the truth.
 */
describe('controller ↔ agent: an install whose agent is killed during verify-health (real agent process, kill -9)', function () {
  this.timeout(240_000);
  let world: MidWorld;
  let fleet: LabCa;
  let controllerId: Identity;
  let readerId: Identity;
  let port: number;
  let configPath: string;
  let daemon: ChildProcess | undefined;
  let dataDir: string;
  let store: Store;
  const logs: string[] = [];
  const events: string[] = [];

  function startDaemon(): Promise<void> {
    logs.length = 0;
    daemon = spawn(AGENT, ['run', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    return waitFor(() => logs.join('').includes('midcert-agent serving'), 90_000, `daemon did not start: ${logs.join('')}`);
  }

  function exited(child: ChildProcess | undefined): Promise<void> {
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((r) => child.once('exit', () => r()));
  }

  const dialOptions = (id: Identity) => ({ caPem: fleet.root.certPem, certChainPem: id.certPem + fleet.intermediate.certPem, keyPem: id.keyPem, serverName: 'mid01-agent' });
  const client = (id: Identity = controllerId): AgentClient => connectAgent(`127.0.0.1:${port}`, dialOptions(id));

  async function keystoreLeaf(): Promise<string> {
    const ks = readKeystore(await readFile(world.host.keystorePath), 'changeit');
    return findEntry(ks, 'defaultsecuritykeypairhandle')?.chain[0]?.sha256 ?? '';
  }

  /** The controller's world: the real agent over mTLS; CA and instance are the simulated MID world's. */
  function deps(onEvent: (e: RotationEvent) => void): RotationDeps {
    const ca: CaPort = {
      submit: async (csrPem) => ({ kind: 'issued', certificatePem: world.ca.signCsr(csrPem, { days: 365 }), chainPem: world.ca.chainPem }),
      poll: async () => ({ kind: 'rejected', reason: 'unused' }),
    };
    const instance: InstancePort = {
      ensureCaChain: async () => undefined,
      publishLeaf: async (_mid, pem) => { await world.publishLeaf(pem); },
      waitForMidUp: async (_mid, _since, timeoutMs) => { await waitFor(() => world.midStatus().instanceStatus === 'Up', timeoutMs, 'the MID is not Up'); },
      retireOldLeaves: async () => undefined,
    };
    return { store, dial: () => agentPort(client()), ca, instance, onEvent };
  }

  const options = (reconnectMs: number): RotationOptions => ({
    force: true, expiringWithinDays: 30, canary: 0, batch: 1, maxFailures: 0, concurrency: 1, dryRun: false,
    caTimeoutMs: 10_000, caPollMs: 100, upTimeoutMs: 60_000, reconnectMs,
  });

  /** Runs one rotation of mid01 and kills the agent with SIGKILL when verify-health starts. */
  async function rotateKillingAgent(reconnectMs: number, afterKill: () => Promise<void>) {
    let killed: Promise<void> | undefined;
    const onEvent = (e: RotationEvent): void => {
      events.push(`${e.step}:${e.state}:${e.message ?? ''}`);
      if (!killed && e.step === 'install:verify-health' && e.message === 'started') {
        const child = daemon;
        child?.kill('SIGKILL');
        killed = exited(child).then(afterKill);
      }
    };
    const agent: Agent = await store.agents.require('mid01');
    events.length = 0;
    const report = await runRotation(deps(onEvent), [agent], options(reconnectMs));
    assert.ok(killed, 'the agent was killed during verify-health');
    await killed;
    assert.ok(events.some((e) => /^install:info:install stream lost \(\[UNAVAILABLE\]/.test(e)), `the install stream broke and the controller asked the agent: ${events.join(' | ')}`);
    return report;
  }

  before(async () => {
    world = await startMidWorld('mid01');
    const socket = join(world.dir, 'runner.sock');
    await world.runner.listen(socket);
    fleet = await createLabCa('Fleet');
    const agentId = await fleet.issueIdentity('CN=mid01-agent', { ...PROFILES.server, sans: ['DNS:mid01-agent', 'IP:127.0.0.1'] });
    controllerId = await fleet.issueIdentity('CN=midcert-controller', PROFILES.operator);
    readerId = await fleet.issueIdentity('CN=monitoring', PROFILES.client);
    await writeFile(join(world.dir, 'agent.pem'), agentId.certPem + fleet.intermediate.certPem);
    await writeFile(join(world.dir, 'agent.key'), agentId.keyPem, { mode: 0o600 });
    await writeFile(join(world.dir, 'fleet-ca.pem'), fleet.root.certPem);
    port = await freePort();
    const ctl = (verb: string): string[] => [process.execPath, '--import', TSX, CTL, '--socket', socket, verb, 'mid01'];
    configPath = join(world.dir, 'agent.yaml');
    await writeFile(configPath, [
      'mid:', `  home: ${world.host.home}`,
      'service:', '  manager: command', `  start: ${JSON.stringify(ctl('start'))}`, `  stop: ${JSON.stringify(ctl('stop'))}`, `  status: ${JSON.stringify(ctl('is-active'))}`,
      'verify:', '  settleSeconds: 3', '  startTimeoutSeconds: 30',
      'subject:', '  template: "CN={midName},O=midcert Lab"',
      'listen:', `  address: 127.0.0.1:${port}`, `  socket: ${join(world.dir, 'agent.sock')}`,
      'tls:', '  cert: agent.pem', '  key: agent.key', '  clientCa: fleet-ca.pem',
      'access:', '  operators: [midcert-controller]', '  readers: [monitoring]',
      'stateDir: state',
      '',
    ].join('\n'));
    await startDaemon();
    dataDir = await mkdtemp(join(tmpdir(), 'midcert-reconnect-'));
    store = await openStore(dataDir, { actor: 'test' });
    await store.agents.add({ name: 'mid01', address: `127.0.0.1:${port}`, serverName: 'mid01-agent', midName: 'mid01' });
  });

  after(async () => {
    daemon?.kill('SIGTERM');
    await exited(daemon);
    await store?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await world?.close();
  });

  it('the agent restarted and finished the install: the job is recorded succeeded with the new certificate', async () => {
    const before = await keystoreLeaf();
    const report = await rotateKillingAgent(120_000, startDaemon);
    const [result] = report.results;
    assert.equal(result?.state, 'succeeded', JSON.stringify(report));
    assert.equal(report.ok, true);
    const leaf = await keystoreLeaf();
    assert.notEqual(leaf, before, 'the keystore holds a new leaf');
    assert.equal(result?.newSha256, leaf, 'the record names the leaf the host holds');
    const job = await store.jobs.require(report.jobId as number);
    assert.equal(job.state, 'succeeded');
    const row = await store.jobAgents.require(job.id, 'mid01');
    assert.equal(row.state, 'succeeded');
    assert.equal(row.errorCode, null);
    const cert = await store.certificates.latest('mid01', 'installed');
    assert.equal(cert?.sha256, leaf, 'the store\'s certificate row is the installed leaf');
    assert.equal(cert?.jobId, job.id);
    // What the controller asked: the agent's own answer for this renewal id.
    const c = client();
    try {
      const answer = await c.getRenewal({ renewalId: `job${job.id}-mid01` });
      assert.equal(answer.state, RenewalPhase.INSTALLED);
      assert.equal(answer.leafSha256, leaf);
    } finally {
      c.close();
    }
    await waitFor(() => world.midStatus().leaf?.sha256 === leaf && world.midStatus().instanceStatus === 'Up', 20_000, 'the MID is not Up with the new leaf');
  });

  it('the agent stays down: the job is recorded failed UNAVAILABLE once the reconnect window has passed', async () => {
    const t0 = Date.now();
    const report = await rotateKillingAgent(6_000, async () => undefined);
    const elapsedAfterKill = Date.now() - t0; // from the start of the rotation: at least the window
    const [result] = report.results;
    assert.equal(result?.state, 'failed', JSON.stringify(report));
    assert.equal(result?.error?.code, 'UNAVAILABLE');
    assert.equal(result?.failedStep, 'install');
    assert.match(result?.error?.message ?? '', /stayed unreachable for 6 s/);
    assert.ok(elapsedAfterKill >= 6_000, `the controller kept trying for the whole window (${elapsedAfterKill} ms)`);
    const job = await store.jobs.require(report.jobId as number);
    assert.equal(job.state, 'failed');
    assert.equal((await store.jobAgents.require(job.id, 'mid01')).errorCode, 'UNAVAILABLE');
    // Bring the agent back (it finishes that install on start) for the next test.
    await startDaemon();
  });

  it('GetRenewal answers UNKNOWN / RENEWAL_NOT_FOUND for an id it never saw, to a reader too; a bad id is USAGE', async () => {
    const ro = client(readerId);
    try {
      const answer = await ro.getRenewal({ renewalId: 'job999-mid01' });
      assert.equal(answer.state, RenewalPhase.UNKNOWN);
      assert.equal(answer.errorCode, 'RENEWAL_NOT_FOUND');
      assert.equal(answer.renewalId, 'job999-mid01');
      await assert.rejects(ro.getRenewal({ renewalId: '../etc' }), (e: { code?: string }) => e.code === 'USAGE');
      await assert.rejects(ro.prepareRenewal({ renewalId: 'x1' }), (e: { code?: string }) => e.code === 'PERMISSION_DENIED');
    } finally {
      ro.close();
    }
  });
});
