import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseAgentConfig } from '../../agent/config.js';
import { Journal } from '../../agent/journal.js';
import { createLabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';
import { connectAgent } from '../../proto/agent-client.js';
import { startMidWorld, waitFor, type MidWorld } from '../helpers/mid-world.js';
import { run } from '../helpers/run.js';

/**
 * The agent's optional /metrics (config `metrics.listen`, off by default) on a real
 * `midcert-agent run`: the keystore leaf's expiry and the journal's last install result,
 * promtool-clean; and SIGTERM with a WatchEvents stream open ends the process with code 0
 * (the time is printed; the goal is recorded in bench/RESULTS.md, the bound here is a hang guard).
 */
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

function value(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('midcert-agent optional /metrics', function () {
  this.timeout(180_000);
  let world: MidWorld;
  let daemon: ChildProcess | undefined;
  let metricsPort: number;
  let rpcPort: number;
  const logs: string[] = [];
  let fleetRoot = '';
  let controllerPem = '';
  let controllerKey = '';

  it('is off unless metrics.listen is set', () => {
    const base = 'mid:\n  home: /opt/mid\nservice:\n  manager: systemd\n  unit: mid.service\n';
    assert.equal(parseAgentConfig(base, '/etc/midcert/agent.yaml').metrics, undefined);
    assert.equal(parseAgentConfig(`${base}metrics:\n  listen: 127.0.0.1:9465\n`, '/etc/midcert/agent.yaml').metrics?.listen, '127.0.0.1:9465');
    assert.throws(() => parseAgentConfig(`${base}metrics:\n  listen: nope\n`, '/etc/midcert/agent.yaml'));
  });

  before(async () => {
    world = await startMidWorld('mid01');
    const socket = join(world.dir, 'runner.sock');
    await world.runner.listen(socket);
    const fleet = await createLabCa('Fleet');
    const agentId = await fleet.issueIdentity('CN=mid01-agent', { ...PROFILES.server, sans: ['DNS:mid01-agent', 'IP:127.0.0.1'] });
    const controller = await fleet.issueIdentity('CN=midcert-controller', PROFILES.operator);
    fleetRoot = fleet.root.certPem;
    controllerPem = controller.certPem + fleet.intermediate.certPem;
    controllerKey = controller.keyPem;
    await writeFile(join(world.dir, 'agent.pem'), agentId.certPem + fleet.intermediate.certPem);
    await writeFile(join(world.dir, 'agent.key'), agentId.keyPem, { mode: 0o600 });
    await writeFile(join(world.dir, 'fleet-ca.pem'), fleet.root.certPem);
    metricsPort = await freePort();
    rpcPort = await freePort();
    const ctl = (verb: string): string[] => [process.execPath, '--import', TSX, CTL, '--socket', socket, verb, 'mid01'];
    const configPath = join(world.dir, 'agent.yaml');
    await writeFile(configPath, [
      'mid:', `  home: ${world.host.home}`,
      'service:', '  manager: command', `  start: ${JSON.stringify(ctl('start'))}`, `  stop: ${JSON.stringify(ctl('stop'))}`, `  status: ${JSON.stringify(ctl('is-active'))}`,
      'listen:', `  address: 127.0.0.1:${rpcPort}`,
      'tls:', '  cert: agent.pem', '  key: agent.key', '  clientCa: fleet-ca.pem',
      'access:', '  operators: [midcert-controller]',
      'stateDir: state',
      'metrics:', `  listen: 127.0.0.1:${metricsPort}`,
      '',
    ].join('\n'));
    // A failed install in the journal, as a previous run would have left it.
    await new Journal(join(world.dir, 'state')).saveLastResult({
      ok: false, renewalId: 'job7-mid01', failedStep: 'verify-health', error: { code: 'HEALTH_CHECK_FAILED', message: 'MID did not come back', detail: '' },
      rolledBack: true, previousSha256: 'a'.repeat(64), currentSha256: 'a'.repeat(64), finishedAt: '2026-11-30T10:00:00.000Z',
    });
    daemon = spawn(AGENT, ['run', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    daemon.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    await waitFor(() => logs.join('').includes('midcert-agent serving'), 60_000, `daemon did not start: ${logs.join('')}`);
  });

  after(async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    await world?.close();
  });

  it('serves the keystore leaf expiry and the last install result, promtool-clean', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const lint = await run('promtool', ['check', 'metrics'], { input: text, timeoutMs: 30_000 });
    assert.equal(lint.code, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
    const leaf = findEntry(readKeystore(await readFile(world.host.keystorePath), 'changeit'), 'defaultsecuritykeypairhandle')?.chain[0];
    assert.ok(leaf, 'the world MID has a client certificate');
    assert.equal(value(text, 'midcert_agent_certificate_expiration_timestamp_seconds'), leaf.notAfter.getTime() / 1000);
    assert.equal(value(text, 'midcert_agent_certificate_not_before_timestamp_seconds'), leaf.notBefore.getTime() / 1000);
    assert.equal(value(text, 'midcert_agent_keystore_readable'), 1);
    assert.equal(value(text, 'midcert_agent_last_install_success'), 0);
    assert.equal(value(text, 'midcert_agent_last_install_timestamp_seconds'), Date.parse('2026-11-30T10:00:00.000Z') / 1000);
    assert.equal(value(text, 'midcert_agent_install_in_progress'), 0);
    assert.match(text, /^# HELP process_resident_memory_bytes /m);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);
  });

  it('exits with code 0 soon after SIGTERM, with a WatchEvents stream open', async () => {
    const client = connectAgent(`127.0.0.1:${rpcPort}`, { caPem: fleetRoot, certChainPem: controllerPem, keyPem: controllerKey, serverName: 'mid01-agent' });
    const abort = new AbortController();
    const events: string[] = [];
    const streaming = (async () => { try { for await (const e of client.watchEvents({}, { signal: abort.signal })) events.push(e.type); } catch { /* the server went away */ } })();
    await new Promise((r) => setTimeout(r, 1000)); // the stream is open (it yields only on changes)
    const child = daemon as ChildProcess;
    const start = performance.now();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    const guard = new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`still running 10 s after SIGTERM: ${logs.join('').slice(-2000)}`)), 10_000).unref());
    const code = await Promise.race([exited, guard]);
    const ms = performance.now() - start;
    abort.abort();
    await streaming;
    client.close();
    assert.equal(code, 0, logs.join('').slice(-2000));
    process.stdout.write(`      (midcert-agent run exited ${Math.round(ms)} ms after SIGTERM)\n`);
  });
});
