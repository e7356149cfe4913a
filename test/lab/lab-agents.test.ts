import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../helpers/run.js';

/**
 * `midcert-lab up --with-agents` end to end: the real bin/midcert-lab starts a lab with a
 * controller data dir and one agent per MID (all in one agents process), then the real
 * controller CLI (bin/midcert) and agent CLI (bin/midcert-agent) use it exactly as documented,
 * up to a real rotation of one MID.
 */

const LAB = resolve(import.meta.dirname, '../../bin/midcert-lab');
const MIDCERT = resolve(import.meta.dirname, '../../bin/midcert');
const AGENT = resolve(import.meta.dirname, '../../bin/midcert-agent');
const LEAF_DAYS = 20;

interface UpJson {
  instance: { url: string; username: string; password: string };
  adcs: { url: string; password: string };
  mids: Array<{ name: string; home: string }>;
  caFile: string;
  pids: Record<string, number>;
  controller: { dataDir: string; configFile: string; fleetCaFile: string };
  agents: Array<{ name: string; address: string; config: string; socket: string; stateDir: string }>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function recordedPids(dir: string): Promise<number[]> {
  const state = JSON.parse(await readFile(join(dir, 'lab.json'), 'utf8')) as { processes: Record<string, { pid: number }> };
  return Object.values(state.processes).map((p) => p.pid);
}

/** GET on the lab instance's Table API as the admin, trusting only the lab root. */
function table(lab: UpJson, ca: string, path: string): Promise<any[]> {
  return new Promise((done, fail) => {
    const auth = Buffer.from(`${lab.instance.username}:${lab.instance.password}`).toString('base64');
    const req = request(`${lab.instance.url}/api/now/table/${path}`, { ca, agent: false, headers: { Accept: 'application/json', Authorization: `Basic ${auth}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => (res.statusCode === 200 ? done((JSON.parse(text) as { result: any[] }).result) : fail(new Error(`HTTP ${res.statusCode}: ${text}`))));
    });
    req.on('error', fail);
    req.end();
  });
}

describe('midcert-lab up --with-agents (controller data dir + one agent per MID)', function () {
  this.timeout(180_000);
  let dir: string;
  let lab: UpJson;
  let ca: string;

  const labRun = (args: string[]): ReturnType<typeof run> => run(LAB, args, { timeoutMs: 150_000 });
  const midcert = (args: string[]): ReturnType<typeof run> => run(MIDCERT, ['--data-dir', lab.controller.dataDir, ...args], { timeoutMs: 150_000 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-lab-agents-'));
    const up = await labRun(['up', '--dir', dir, '--mids', '2', '--with-agents', '--json', '--publish-delay-ms', '200', '--heartbeat-ms', '500', '--leaf-days', String(LEAF_DAYS)]);
    assert.equal(up.code, 0, `up failed: ${up.stderr}`);
    lab = JSON.parse(up.stdout) as UpJson;
    ca = await readFile(lab.caFile, 'utf8');
  });

  after(async () => {
    if (!dir) return;
    await labRun(['down', '--dir', dir]).catch(() => undefined);
    for (const pid of await recordedPids(dir).catch(() => [] as number[])) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('up --json keeps the lab contract and adds controller.dataDir and agents[{name,address,config}]', async () => {
    assert.match(lab.instance.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(lab.mids.map((m) => m.name), ['mid01', 'mid02']);
    assert.equal(lab.controller.dataDir, join(dir, 'controller'));
    for (const file of ['controller.yaml', 'midcert.db', 'fleet/ca.pem', 'fleet/controller.pem']) {
      assert.ok((await stat(join(lab.controller.dataDir, file))).isFile(), file);
    }
    const yaml = await readFile(join(lab.controller.dataDir, 'controller.yaml'), 'utf8');
    assert.match(yaml, new RegExp(`dir: ${join(dir, 'ca')}\\n`), 'the local CA is the lab CA');
    assert.match(yaml, new RegExp(`url: ${lab.instance.url}\\n`));
    assert.deepEqual(lab.agents.map((a) => a.name), ['mid01', 'mid02']);
    const ports = new Set<string>();
    for (const agent of lab.agents) {
      assert.match(agent.address, /^127\.0\.0\.1:\d+$/);
      ports.add(agent.address);
      assert.equal(agent.config, join(dir, 'agents', agent.name, 'agent.yaml'));
      assert.equal((await stat(join(dir, 'agents', agent.name, 'agent.key'))).mode & 0o777, 0o600);
      const config = await readFile(agent.config, 'utf8');
      assert.match(config, new RegExp(`address: ${agent.address.replace(/\./g, '\\.')}\\n`));
      assert.match(config, /manager: command/);
      assert.match(config, /- midcert-controller\n/);
    }
    assert.equal(ports.size, 2, 'distinct ports');
    assert.ok(alive(lab.pids['agents'] as number), 'the agents process runs');
    assert.deepEqual(Object.keys(lab.pids).sort(), ['adcs', 'agents', 'instance', 'runner']);
    // One agents process hosts both daemons; secrets are in no log.
    assert.match(await readFile(join(dir, 'logs', 'agents.out'), 'utf8'), /^midcert-lab-agents: serving 2 agents/m);
    for (const file of await readdir(join(dir, 'logs'))) {
      const text = await readFile(join(dir, 'logs', file), 'utf8');
      for (const secret of [lab.instance.password, lab.adcs.password]) assert.equal(text.includes(secret), false, file);
    }
  });

  it('the controller lists both agents', async () => {
    const list = await midcert(['agents', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const agents = (JSON.parse(list.stdout) as { agents: any[] }).agents;
    assert.deepEqual(agents.map((a) => [a.name, a.address, a.serverName, a.midName]), lab.agents.map((a) => [a.name, a.address, a.name, a.name]));
  });

  it('controller status: both agents reachable over mTLS, Up on the instance, with the lab leaf', async () => {
    const status = await midcert(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout) as { ok: boolean; instance: { url: string }; agents: any[] };
    assert.equal(report.instance.url, lab.instance.url);
    assert.deepEqual(report.agents.map((a) => [a.name, a.reachable, a.instanceStatus]), [['mid01', true, 'Up'], ['mid02', true, 'Up']]);
    for (const agent of report.agents) {
      assert.ok(agent.certificate.daysLeft >= LEAF_DAYS - 1 && agent.certificate.daysLeft <= LEAF_DAYS, `daysLeft ${agent.certificate.daysLeft}`);
      assert.equal(agent.certificate.subject, `CN=${agent.name},O=midcert Lab`);
    }
  });

  it('midcert-agent status --config DIR/agents/mid01/agent.yaml reads through the agent daemon', async () => {
    const status = await run(AGENT, ['status', '--config', lab.agents[0]!.config, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const json = JSON.parse(status.stdout);
    assert.equal(json.midName, 'mid01');
    assert.equal(json.certificate.present, true);
    assert.equal(json.service.active, true);
  });

  it('lab status shows the agents process and each agent', async () => {
    const status = await labRun(['status', '--dir', dir, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout);
    assert.equal(report.state, 'running');
    assert.equal(report.processes.agents.running, true);
    assert.equal(report.controller.dataDir, lab.controller.dataDir);
    assert.deepEqual(report.agents.map((a: any) => [a.name, a.address, a.listening]), lab.agents.map((a) => [a.name, a.address, true]));
  });

  it('a real controller rotation of mid01 succeeds: new leaf installed, MID Up', async () => {
    const rotate = await midcert(['rotate', '--agent', 'mid01', '--force', '--json']);
    assert.equal(rotate.code, 0, `${rotate.stdout}\n${rotate.stderr}`);
    const report = JSON.parse(rotate.stdout);
    assert.equal(report.ok, true);
    const [result] = report.results;
    assert.equal(result.state, 'succeeded', JSON.stringify(result));
    assert.match(result.newSha256, /^[0-9a-f]{64}$/);
    assert.notEqual(result.newSha256, result.previousSha256);
    const [ecc] = await table(lab, ca, 'ecc_agent?sysparm_query=name=mid01&sysparm_fields=name,status');
    assert.equal(ecc?.status, 'Up');
    // The agent reads the new leaf from the MID's keystore; mid02 is untouched.
    const after = JSON.parse((await midcert(['status', '--json'])).stdout) as { agents: any[] };
    assert.equal(after.agents.find((a) => a.name === 'mid01').certificate.sha256, result.newSha256);
    assert.equal(after.agents.find((a) => a.name === 'mid01').lastRotation.state, 'succeeded');
    assert.equal(after.agents.find((a) => a.name === 'mid02').instanceStatus, 'Up');
  });

  it('refuses a non-empty --controller-dir, and --controller-dir without --with-agents (usage, exit 2)', async () => {
    const other = await mkdtemp(join(tmpdir(), 'midcert-lab-other-'));
    try {
      const busy = join(other, 'busy');
      await mkdir(busy);
      await writeFile(join(busy, 'keep.txt'), 'not the lab\'s');
      const refused = await labRun(['up', '--dir', join(other, 'lab'), '--mids', '0', '--with-agents', '--controller-dir', busy]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /\[USAGE\] the controller data dir .* is not empty/);
      assert.equal(await readFile(join(busy, 'keep.txt'), 'utf8'), 'not the lab\'s');
      assert.equal((await labRun(['up', '--dir', join(other, 'lab'), '--controller-dir', busy])).code, 2);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('down stops the agents process first and leaves nothing running', async () => {
    const pids = await recordedPids(dir);
    assert.equal(pids.length, 4);
    const down = await labRun(['down', '--dir', dir, '--json']);
    assert.equal(down.code, 0, down.stderr);
    const stopped = JSON.parse(down.stdout).stopped as Array<{ part: string; outcome: string }>;
    assert.deepEqual(stopped.map((s) => s.part), ['agents', 'runner', 'adcs', 'instance']);
    assert.ok(stopped.every((s) => s.outcome === 'stopped'), JSON.stringify(stopped));
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still runs`);
    for (const agent of lab.agents) await assert.rejects(stat(agent.socket), `${agent.socket} left behind`);
    assert.equal((await labRun(['status', '--dir', dir])).code, 3);
  });
});
