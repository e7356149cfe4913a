import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join, resolve, sep } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { connectAgent } from '../proto/agent-client.js';
import { controllerConfigPath } from '../controller/config.js';
import { initDataDir } from '../controller/data-dir.js';
import { CONTROLLER_CN, controllerIdentity, fleetPaths, makeAgentKeyAndCsr, signAgentIdentity, type FleetIdentity } from '../controller/fleet-ca.js';
import { openStore } from '../controller/store/index.js';
import { labProgramArgv, sleep } from './processes.js';
import { labOwnedPaths, type LabAgent, type LabAgents, type LabMid, type LabPaths } from './state.js';

/**
 * `midcert-lab up --with-agents`: a controller data dir whose MID CA is the lab CA and whose
 * instance is the lab instance, and one real midcert-agent configuration per simulated MID
 * (fleet-CA-signed mTLS identity made from a CSR, `service.manager: command` wired to the MID
 * runner), registered in the controller's store. The daemons themselves run in one process,
 * lab/agents-main.ts (see up.ts).
 */

export interface AgentsSetup {
  controllerDir: string;
  settleSeconds: number;
  /** The lab's time scale: the MID takes 30 s × scale to start and polls every 40 s × scale. */
  timeScale?: number;
  /** Instance URL (no trailing slash). */
  instanceUrl: string;
  adminUser: string;
  /** Host set-ups at once (key + CSR + signature). */
  parallel: number;
}

/** Marks a controller data dir as made by the lab, so a later `up` may replace it. */
const LAB_MARKER = '# written by midcert-lab up --with-agents';
/** Unix socket paths are limited to 108 bytes (sun_path) on Linux. */
const MAX_SOCKET_PATH = 104;
export const DEFAULT_AGENT_SETTLE_SECONDS = 3;
/** GetStatus calls at once while `up` waits (each runs a service status command in the agents process). */
const STATUS_PARALLEL = 8;

export function agentDir(paths: LabPaths, name: string): string {
  return join(paths.agentsDir, name);
}

export function agentSocket(paths: LabPaths, name: string): string {
  return join(agentDir(paths, name), 'agent.sock');
}

/**
 * Checks, before anything starts, that the agents' Unix sockets fit and that the controller dir
 * is free: missing or empty (a dir left by an earlier lab in DIR has been removed already).
 */
export async function checkAgentsPlan(paths: LabPaths, controllerDir: string, longestName: string): Promise<void> {
  const socket = agentSocket(paths, longestName);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new MidcertError('USAGE', `--dir ${paths.dir} is too long for the agents' Unix sockets (${socket}); use a shorter path`);
  }
  const inside = (child: string, parent: string): boolean => child === parent || child.startsWith(`${parent}${sep}`);
  const clash = inside(paths.dir, controllerDir) ? paths.dir : labOwnedPaths(paths).find((p) => p !== paths.controllerDir && inside(controllerDir, p));
  if (clash) throw new MidcertError('USAGE', `--controller-dir ${controllerDir} overlaps the lab's own ${clash}; use DIR/controller (the default) or a separate directory`);
  const entries = await readdir(controllerDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw new MidcertError('OUTPUT_FAILED', `cannot use ${controllerDir} as the controller data dir: ${err.code ?? err.message}`);
  });
  if (entries.length > 0) {
    throw new MidcertError('USAGE', `the controller data dir ${controllerDir} is not empty; give --controller-dir a new or empty directory`);
  }
}

/**
 * Removes a controller data dir an earlier lab made outside DIR (--controller-dir), but only
 * when it still carries the lab's marker: anything else is left alone (and `up` then refuses it).
 */
export async function removeLabControllerDir(dir: string): Promise<void> {
  const text = await readFile(controllerConfigPath(dir), 'utf8').catch(() => '');
  if (text.startsWith(LAB_MARKER)) await rm(dir, { recursive: true, force: true });
}

/** The controller.yaml of a lab: local CA = the lab CA, instance = the lab instance as admin. */
export function controllerYaml(paths: LabPaths, setup: AgentsSetup): string {
  const config = {
    ca: { type: 'local', dir: paths.caDir },
    instance: {
      url: setup.instanceUrl,
      username: setup.adminUser,
      passwordFile: paths.adminPasswordFile,
      caFile: paths.caFile,
      publishTimeoutSeconds: 60,
      midUserPattern: 'mid.{name}',
    },
    // vendor-facts §7: "Default timeout ≥ 10 min (5-min heartbeat + JVM start)" — scaled like every lab timing, at least 60 s.
    rotation: { canary: 1, batch: 10, maxFailures: 1, concurrency: 10, renewWithinDays: 30, upTimeoutSeconds: Math.max(60, Math.ceil(600 * (setup.timeScale ?? 1))) },
  };
  return [
    `${LAB_MARKER} (lab ${paths.dir}); \`midcert-lab up\` replaces it.`,
    '# MID certificates come from the lab CA (the one the lab instance trusts); the instance is the lab',
    '# instance, as its admin. See docs/lab/README.md and docs/controller-cli.md.',
    toYaml(config),
  ].join('\n');
}

/** The agent.yaml of one lab MID. Paths are absolute except the agent's own files next to it. */
export function agentYaml(paths: LabPaths, mid: LabMid, agent: LabAgent, controllerDir: string, settleSeconds: number): string {
  const ctl = (verb: string): string[] => [...labProgramArgv('mid/ctl-main'), '--socket', paths.socket, verb, mid.unit];
  const config = {
    mid: { home: mid.home },
    service: { manager: 'command', start: ctl('start'), stop: ctl('stop'), status: ctl('is-active'), timeoutSeconds: 30 },
    verify: { settleSeconds, startTimeoutSeconds: 30 },
    subject: { template: 'CN={midName},O=midcert Lab' },
    listen: { address: agent.address, socket: agent.socket },
    tls: { cert: 'agent.pem', key: 'agent.key', clientCa: fleetPaths(controllerDir).caCert },
    access: { operators: [CONTROLLER_CN] },
    stateDir: agent.stateDir,
    preflight: { instanceCaFile: paths.caFile },
    log: { level: 'info' },
  };
  return [
    `# midcert-agent for lab MID ${mid.name}, written by midcert-lab up --with-agents (lab ${paths.dir}).`,
    `# Served by the lab's agents process; try: bin/midcert-agent status --config ${agent.config}`,
    toYaml(config, { lineWidth: 0 }),
  ].join('\n');
}

/**
 * The controller data dir (initDataDir with the lab's controller.yaml), one agent folder per MID
 * (key 0600 made here — in the lab this machine is the agent host — CSR signed by the fleet CA,
 * agent.yaml), the list file for the agents process, and every agent registered in the store.
 */
export async function setUpAgents(paths: LabPaths, mids: LabMid[], setup: AgentsSetup): Promise<LabAgents> {
  const controllerDir = resolve(setup.controllerDir);
  await initDataDir(controllerDir, { configText: controllerYaml(paths, setup), actor: 'midcert-lab' });
  await mkdir(paths.agentsDir, { recursive: true, mode: 0o755 });
  const ports = await freePorts(mids.length);
  const agents: LabAgent[] = mids.map((mid, i) => {
    const dir = agentDir(paths, mid.name);
    const port = ports[i] as number;
    return { name: mid.name, address: `127.0.0.1:${port}`, port, config: join(dir, 'agent.yaml'), socket: agentSocket(paths, mid.name), stateDir: join(dir, 'state') };
  });
  await mapLimit(agents, setup.parallel, async (agent, i) => {
    const mid = mids[i] as LabMid;
    const dir = agentDir(paths, agent.name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await mkdir(agent.stateDir, { recursive: true, mode: 0o700 });
    const sans = [`DNS:${agent.name}`, 'IP:127.0.0.1'];
    const { keyPem, csrPem } = await makeAgentKeyAndCsr(agent.name, { sans });
    const certPem = await signAgentIdentity(controllerDir, csrPem, { name: agent.name, sans });
    await writeFileAtomic(join(dir, 'agent.key'), keyPem, { mode: 0o600 });
    await writeFileAtomic(join(dir, 'agent.pem'), certPem);
    await writeFileAtomic(agent.config, agentYaml(paths, mid, agent, controllerDir, setup.settleSeconds));
  });
  const listFile = join(paths.agentsDir, 'agents.json'); // as recorded by up.ts before this runs
  await writeFileAtomic(listFile, `${JSON.stringify(agents.map((a) => a.config), null, 2)}\n`);

  const store = await openStore(controllerDir, { actor: 'midcert-lab' });
  try {
    // One after another: the adds share the transaction's connection.
    await store.transaction(async () => {
      for (const agent of agents) await store.agents.add({ name: agent.name, address: agent.address, serverName: agent.name, midName: agent.name, instanceUrl: setup.instanceUrl });
    });
  } finally {
    await store.close();
  }
  return { controllerDir, listFile, logFile: join(paths.logsDir, 'agents.log'), settleSeconds: setup.settleSeconds, list: agents };
}

/**
 * Distinct free TCP ports on 127.0.0.1: all held open at once, then released, so no two agents
 * get the same one. (Another program could take one before its agent binds; the agents process
 * then fails with EADDRINUSE and `up` says so.)
 */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((done, fail) => {
        server.once('error', fail);
        server.listen(0, '127.0.0.1', done);
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((done) => (s.listening ? s.close(() => done()) : done()))));
  }
}

/**
 * Waits until every agent answers GetStatus over mutual TLS the way the controller dials it
 * (controller identity from the fleet CA, serverName = the agent's name) and names its MID.
 * A GetStatus costs the agent one run of its service status command (a Node process), so a big
 * fleet takes a while: the wait fails only when no further agent has answered for `timeoutMs`
 * (or the agents process exited), naming the agents that did not, with their last error.
 */
export async function waitAgentsAnswer(controllerDir: string, agents: LabAgent[], timeoutMs: number, processAlive: () => boolean): Promise<void> {
  const id: FleetIdentity = await controllerIdentity(controllerDir);
  let deadline = Date.now() + timeoutMs;
  const lastError = new Map<string, string>();
  let pending = [...agents];
  while (pending.length > 0) {
    const answered = new Set<string>();
    await mapLimit(pending, STATUS_PARALLEL, async (agent) => {
      const client = connectAgent(agent.address, { caPem: id.caPem, certChainPem: id.certPem, keyPem: id.keyPem, serverName: agent.name, unaryDeadlineMs: 15_000 });
      try {
        const status = await client.getStatus({});
        if (status.midName === agent.name) answered.add(agent.name);
        else lastError.set(agent.name, `answers for MID "${status.midName}"`);
      } catch (err) {
        lastError.set(agent.name, (err as Error).message.split('\n')[0] ?? String(err));
      } finally {
        client.close();
      }
    });
    pending = pending.filter((a) => !answered.has(a.name));
    if (pending.length === 0) return;
    if (answered.size > 0) deadline = Date.now() + timeoutMs;
    if (!processAlive() || Date.now() > deadline) {
      const shown = pending.slice(0, 5).map((a) => `${a.name} at ${a.address} (${lastError.get(a.name) ?? 'no answer'})`).join('; ');
      const more = pending.length > 5 ? `; and ${pending.length - 5} more` : '';
      const why = processAlive() ? `within ${timeoutMs} ms` : '(the agents process exited)';
      throw new MidcertError('LAB_START_FAILED', `${pending.length} of ${agents.length} agents did not answer GetStatus over mutual TLS ${why}: ${shown}${more}`);
    }
    await sleep(250);
  }
}

/** Runs `work` over `items` with at most `limit` at once; fails with the first error after the rest settle. */
async function mapLimit<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const index = next++;
      try {
        await work(items[index] as T, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
}
