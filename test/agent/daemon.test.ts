import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { connectAgent, type AgentClient } from '../../proto/agent-client.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
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

describe('midcert-agent daemon end to end (real process, mTLS gRPC, simulated MID and instance)', function () {
  this.timeout(180_000);
  let world: MidWorld;
  let fleet: LabCa;
  let controller: Identity;
  let port: number;
  let configPath: string;
  let daemon: ChildProcess | undefined;
  let client: AgentClient;
  const logs: string[] = [];

  function startDaemon(): Promise<void> {
    logs.length = 0;
    daemon = spawn(AGENT, ['run', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    return waitFor(() => logs.join('').includes('midcert-agent serving'), 30_000, `daemon did not start: ${logs.join('')}`);
  }

  async function stopDaemon(signal: NodeJS.Signals): Promise<number | null> {
    const child = daemon;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    return exited;
  }

  before(async () => {
    world = await startMidWorld('mid01');
    const socket = join(world.dir, 'runner.sock');
    await world.runner.listen(socket);
    fleet = await createLabCa('Fleet');
    const agentId = await fleet.issueIdentity('CN=mid01-agent', { ...PROFILES.server, sans: ['DNS:mid01-agent', 'IP:127.0.0.1'] });
    controller = await fleet.issueIdentity('CN=midcert-controller', PROFILES.operator);
    const reader = await fleet.issueIdentity('CN=monitoring', PROFILES.client);
    await writeFile(join(world.dir, 'agent.pem'), agentId.certPem + fleet.intermediate.certPem);
    await writeFile(join(world.dir, 'agent.key'), agentId.keyPem, { mode: 0o600 });
    await writeFile(join(world.dir, 'fleet-ca.pem'), fleet.root.certPem);
    await writeFile(join(world.dir, 'reader.json'), JSON.stringify({ certPem: reader.certPem + fleet.intermediate.certPem, keyPem: reader.keyPem }));
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
      'preflight:', '  instanceCaFile: root.pem',
      '',
    ].join('\n'));
    await startDaemon();
    client = connectAgent(`127.0.0.1:${port}`, { caPem: fleet.root.certPem, certChainPem: controller.certPem + fleet.intermediate.certPem, keyPem: controller.keyPem, serverName: 'mid01-agent' });
  });

  after(async () => {
    client?.close();
    await stopDaemon('SIGTERM');
    await world?.close();
  });

  it('reports status over mTLS that matches the keystore', async () => {
    const status = await client.getStatus({});
    const store = readKeystore(await readFile(world.host.keystorePath), 'changeit');
    assert.equal(status.midName, 'mid01');
    assert.equal(status.certificate?.leaf?.sha256, findEntry(store, 'defaultsecuritykeypairhandle')?.chain[0]?.sha256);
    assert.equal(status.config?.authMode, 'mutual');
    assert.equal(status.service?.active, true);
  });

  it('runs host preflight over RPC', async () => {
    const report = await client.runPreflight({});
    const byName = new Map(report.checks.map((c) => [c.name, c]));
    assert.equal(byName.get('instance-reachable')?.ok, true, JSON.stringify(report.checks));
    // The lab leaf is short-lived on purpose: CERT_EXPIRING is a warning, never an error here.
    assert.notEqual(byName.get('keystore')?.severity, 'error', JSON.stringify(byName.get('keystore')));
  });

  it('prepares, installs over a progress stream, and the MID heartbeats Up with the new leaf', async () => {
    const prepared = await client.prepareRenewal({ renewalId: 'e2e-1' });
    assert.match(prepared.csrPem, /BEGIN CERTIFICATE REQUEST/);
    assert.doesNotMatch(JSON.stringify(prepared), /PRIVATE KEY/);
    const certificatePem = world.ca.signCsr(prepared.csrPem);
    await world.publishLeaf(certificatePem);
    const steps: string[] = [];
    let final;
    for await (const p of client.installCertificate({ renewalId: 'e2e-1', certificatePem, chainPem: world.ca.chainPem })) {
      steps.push(`${p.step}:${p.state}`);
      if (p.result) final = p.result;
    }
    assert.ok(final?.ok, JSON.stringify(final));
    assert.ok(steps.includes('import:done') && steps.includes('verify-health:done'), steps.join(' '));
    await waitFor(() => world.midStatus().leaf?.sha256 === final?.currentSha256 && world.midStatus().instanceStatus === 'Up', 20_000, 'MID not Up with the new leaf');
  });

  it('refuses a mutating call from the reader identity and answers its status call', async () => {
    const reader = JSON.parse(await readFile(join(world.dir, 'reader.json'), 'utf8')) as { certPem: string; keyPem: string };
    const ro = connectAgent(`127.0.0.1:${port}`, { caPem: fleet.root.certPem, certChainPem: reader.certPem, keyPem: reader.keyPem, serverName: 'mid01-agent' });
    try {
      assert.equal((await ro.getStatus({})).midName, 'mid01');
      await assert.rejects(ro.restartService({}), (e: { code?: string }) => e.code === 'PERMISSION_DENIED');
    } finally {
      ro.close();
    }
  });

  it('`midcert-agent status --json` reads through the daemon socket', async () => {
    const out = await new Promise<string>((done, fail) => {
      const child = spawn(AGENT, ['status', '--config', configPath, '--json']);
      let text = '';
      child.stdout.on('data', (d: Buffer) => { text += d.toString(); });
      child.on('exit', (code) => (code === 0 ? done(text) : fail(new Error(`exit ${code}`))));
    });
    assert.equal(JSON.parse(out).midName, 'mid01');
  });

  it('survives kill -9 during the health check: on restart it finishes the install', async () => {
    const prepared = await client.prepareRenewal({ renewalId: 'e2e-kill' });
    const certificatePem = world.ca.signCsr(prepared.csrPem);
    await world.publishLeaf(certificatePem);
    const stream = client.installCertificate({ renewalId: 'e2e-kill', certificatePem, chainPem: world.ca.chainPem });
    try {
      for await (const p of stream) {
        if (p.step === 'verify-health' && p.state === 'started') {
          daemon?.kill('SIGKILL');
          break;
        }
      }
    } catch {
      // the stream breaks when the daemon dies
    }
    await new Promise((r) => (daemon?.exitCode !== null || daemon?.signalCode !== null ? r(undefined) : daemon?.once('exit', r)));
    await startDaemon();
    client.close();
    client = connectAgent(`127.0.0.1:${port}`, { caPem: fleet.root.certPem, certChainPem: controller.certPem + fleet.intermediate.certPem, keyPem: controller.keyPem, serverName: 'mid01-agent' });
    const status = await client.getStatus({});
    assert.equal(status.agent?.lastResult?.renewalId, 'e2e-kill');
    assert.equal(status.agent?.lastResult?.ok, true, JSON.stringify(status.agent?.lastResult));
    assert.equal(status.agent?.renewalState, 'idle');
    await waitFor(() => world.midStatus().leaf?.sha256 === status.agent?.lastResult?.currentSha256 && world.midStatus().instanceStatus === 'Up', 20_000, 'MID not Up after resume');
  });

  it('shuts down cleanly on SIGTERM', async () => {
    const before = logs.length;
    assert.equal(await stopDaemon('SIGTERM'), 0);
    assert.match(logs.slice(before).join('') || logs.join(''), /midcert-agent stopped/);
    await startDaemon(); // for after()
  });
});
