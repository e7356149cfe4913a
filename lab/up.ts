import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdir, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { MidcertError, isMidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { PROFILES } from '../pki/issue.js';
import { DEFAULT_TEMPLATES, type TemplateConfig, type TemplateMode } from './adcs/index.js';
import { createLabCa, saveLabCa, type LabCa } from './lab-ca.js';
import { sendControlRequest, type ControlRequest, type ControlResponse } from './mid/control-protocol.js';
import { createMidHost } from './mid/host.js';
import type { MidStatus } from './mid/unit-status.js';
import { stopLabProcesses } from './down.js';
import { LAUNCHER, REPO_ROOT, labProgramArgv, sleep, spawnDetached, waitForReady, type SpawnedPart } from './processes.js';
import { InstanceRest } from './rest.js';
import {
  LAB_FORMAT, acquireLabLock, labOwnedPaths, labPaths, readLabState, runningParts, writeLabState, type LabMid, type LabPart, type LabPaths,
  type LabState,
} from './state.js';

/**
 * `midcert-lab up`: a whole simulated world in the background — lab CA, instance, ADCS and K MID
 * hosts in one runner. `--auth mutual` (default): set up so that the next fleet rotation is a
 * renewal: the CA chain is the active published sys_ca_certificate, every MID runs in mutual-auth
 * mode on a short-lived lab leaf published for its service user. `--auth basic`: every MID is
 * freshly installed (vendor-facts §6): config.xml with mid.instance.username/password, and on its
 * first start the MID makes its own self-signed RSA-2048 defaultsecuritykeypairhandle (keytool
 * -genkeypair); the instance validates it on its first poll (instance option autoValidate).
 * Either way every ecc_agent reads Up before `up` returns. Timings are the vendor's times
 * `timeScale` (docs/lab/mid-instance-protocol.md).
 */

/** How the lab's MIDs authenticate to the instance. */
export type LabAuth = 'mutual' | 'basic';

export interface UpOptions {
  dir: string;
  mids: number;
  leafDays: number;
  publishDelayMs: number;
  publishWord: 'Exists' | 'Active';
  /** One factor on every vendor timing (MID poll 40 s, MID start 30 s, instance monitor 300 s); 1 = real. */
  timeScale: number;
  /** Legacy instance rule "silent this long reads Down", passed on only when given (the protocol's monitor replaces it). */
  downAfterMs?: number;
  /** mutual (default) or basic: see above. */
  auth?: LabAuth;
  /** The MIDs' log line format (vendor-facts §8): old (default) or tokyo. */
  midLogFormat?: 'old' | 'tokyo';
  /** Instance on this port, ADCS on the next; null = ephemeral ports. */
  portBase: number | null;
  adcsTemplateMode: TemplateMode;
  /** How long each part may take to answer, and the MIDs to come Up. */
  timeoutMs: number;
  /** MID hosts set up at once (each import starts a keytool JVM). */
  parallel: number;
  progress?: (line: string) => void;
  /** CLI: on SIGINT/SIGTERM stop what was started and exit 130. */
  exitOnSignal?: boolean;
  /** Also a controller data dir and one midcert-agent per MID (all in one agents process). */
  withAgents?: boolean;
  /** The controller data dir of withAgents (default DIR/controller); must be new or empty. */
  controllerDir?: string;
  /** The agents' verify.settleSeconds (default 3). */
  agentSettleSeconds?: number;
}

export interface UpMid {
  name: string;
  home: string;
  unit: string;
  user: string;
  /** mutual: the published lab leaf's; basic: the MID's self-signed pair's. */
  leafNotAfter: string;
  auth: LabAuth;
  /** Ready-made `service.manager: command` arrays for the agent. */
  service: { start: string[]; stop: string[]; status: string[] };
}

export interface UpResult {
  dir: string;
  /** How every MID authenticates (--auth). */
  auth: LabAuth;
  instance: { url: string; username: string; password: string; passwordFile: string };
  adcs: { url: string; username: string; password: string; passwordFile: string; template: string; templateMode: TemplateMode };
  mids: UpMid[];
  caFile: string;
  chainFile: string;
  runner: { socket: string };
  pids: Partial<Record<LabPart, number>>;
  logsDir: string;
  elapsedMs: number;
  /** With --with-agents: the controller data dir (controller.yaml, midcert.db, fleet/). */
  controller?: { dataDir: string; configFile: string; fleetCaFile: string };
  /** With --with-agents: one per MID, registered in the controller under the MID's name. */
  agents?: UpAgent[];
}

export interface UpAgent {
  name: string;
  /** 127.0.0.1:<port>: mutual TLS, server name = the agent's name. */
  address: string;
  /** Its agent.yaml (for `midcert-agent status --config …`). */
  config: string;
  socket: string;
  stateDir: string;
}

export const ADMIN_USER = 'admin';
export const ADCS_USER = 'LAB\\mid-enroll';
export const ADCS_TEMPLATE = 'MIDServerClient';
const ADCS_PASSWORD_ENV = 'MIDCERT_LAB_ADCS_PASSWORD';
/** Unix socket paths are limited to 108 bytes (sun_path) on Linux. */
const MAX_SOCKET_PATH = 104;
export const MAX_MIDS = 500;
/** Hosts set up at once by default: two per CPU (each is a keytool JVM start plus an RSA key). */
export const DEFAULT_PARALLEL = Math.min(16, Math.max(2, 2 * availableParallelism()));
/** The lab's TLS servers use P-256 keys: quick to make; the MID leaves stay RSA-2048, which is what a MID expects. */
const SERVER_KEY = { type: 'ec', curve: 'P-256' } as const;

/** The MIDs' poll period: mid.poll.time 40 s (SND:…/ecc-queue-mid-server.md) × the time scale. */
export function pollMsOf(options: Pick<UpOptions, 'timeScale'>): number {
  return Math.max(20, Math.round(40_000 * options.timeScale));
}

export function midNames(count: number): string[] {
  const width = Math.max(2, String(count).length);
  return Array.from({ length: count }, (_, i) => `mid${String(i + 1).padStart(width, '0')}`);
}

export async function upLab(options: UpOptions): Promise<UpResult> {
  const startedAt = Date.now();
  const paths = labPaths(options.dir);
  const progress = options.progress ?? (() => undefined);
  if (Buffer.byteLength(paths.socket) > MAX_SOCKET_PATH) {
    throw new MidcertError('USAGE', `--dir ${paths.dir} is too long for the runner's Unix socket (${paths.socket}); use a shorter path`);
  }
  try {
    await mkdir(paths.dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new MidcertError('OUTPUT_FAILED', `cannot create ${paths.dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const release = await acquireLabLock(paths.dir);
  try {
    await clearStoppedLab(paths);
    const controllerDir = resolve(options.controllerDir ?? paths.controllerDir);
    if (options.withAgents) await (await import('./agents.js')).checkAgentsPlan(paths, controllerDir, midNames(options.mids).at(-1) ?? 'mid01');
    const state = initialState(paths, options);
    await writeLabState(state);
    const interrupted = options.exitOnSignal ? stopOnSignal(state, release, progress) : () => undefined;
    try {
      progress(`making the lab CA and credentials in ${paths.dir}`);
      const prepared = await prepareFiles(paths, options);
      const mids = await bringUp(state, paths, prepared, options, progress);
      if (options.withAgents) await startAgents(state, paths, mids, controllerDir, options, progress);
      state.state = 'running';
      await writeLabState(state);
      return result(state, paths, prepared, mids, startedAt);
    } catch (err) {
      progress('start failed; stopping what was started');
      await stopLabProcesses(state, 5000).catch(() => undefined);
      state.state = 'failed';
      await writeLabState(state).catch(() => undefined);
      if (isMidcertError(err) && err.code.startsWith('LAB_')) throw err;
      const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new MidcertError('LAB_START_FAILED', `the lab did not start: ${reason}`, { cause: err });
    } finally {
      interrupted();
    }
  } finally {
    await release();
  }
}

/**
 * While `up` works, SIGINT/SIGTERM (Ctrl-C) stop the processes started so far and exit 130, so
 * an interrupted `up` leaves nothing running. Returns the function that removes the handlers.
 */
function stopOnSignal(state: LabState, release: () => Promise<void>, progress: (line: string) => void): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping what was started`);
    void stopLabProcesses(state, 5000).catch(() => undefined).then(async () => {
      state.state = 'failed';
      await writeLabState(state).catch(() => undefined);
      await release();
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/** A stopped (or crashed) lab is replaced; a running one is refused; foreign files are left alone. */
async function clearStoppedLab(paths: LabPaths): Promise<void> {
  const existing = await readLabState(paths.dir);
  if (existing) {
    const running = await runningParts(existing);
    if (running.length > 0) {
      const which = running.map((part) => `${part} pid ${existing.processes[part]?.pid}`).join(', ');
      throw new MidcertError('LAB_RUNNING', `a lab is already running in ${paths.dir} (${which}); stop it first with: midcert-lab down --dir ${paths.dir}`);
    }
    // A controller dir an earlier lab made outside DIR (--controller-dir) goes too, if still the lab's.
    if (existing.agents && !labOwnedPaths(paths).includes(existing.agents.controllerDir)) {
      await (await import('./agents.js')).removeLabControllerDir(existing.agents.controllerDir);
    }
    for (const path of labOwnedPaths(paths)) await rm(path, { recursive: true, force: true });
    return;
  }
  const present: string[] = [];
  for (const path of labOwnedPaths(paths)) if (await stat(path).then(() => true, () => false)) present.push(path);
  if (present.length > 0) {
    throw new MidcertError('OUTPUT_FAILED', `${paths.dir} holds ${present.join(', ')} but no lab.json; use an empty directory or remove them`);
  }
}

interface Prepared {
  ca: LabCa;
  adminPassword: string;
  adcsPassword: string;
  instanceConfig: string;
  adcsConfig: string;
}

function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

async function prepareFiles(paths: LabPaths, options: UpOptions): Promise<Prepared> {
  for (const dir of [paths.secretsDir, paths.instanceDir, paths.adcsDir, paths.logsDir, paths.runDir]) await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir(paths.midsDir, { recursive: true, mode: 0o755 });
  const ca = await createLabCa('midcert Lab');
  const sans = ['DNS:localhost', 'IP:127.0.0.1'];
  const [instanceTls, adcsTls] = await Promise.all([
    ca.issueIdentity('CN=localhost,O=midcert Lab', { ...PROFILES.server, sans }, { days: 825, keySpec: SERVER_KEY }),
    ca.issueIdentity('CN=adcs.lab.local,O=midcert Lab', { ...PROFILES.server, sans: ['DNS:adcs.lab.local', ...sans] }, { days: 825, keySpec: SERVER_KEY }),
    saveLabCa(ca, paths.caDir),
  ]);
  const adminPassword = newPassword();
  const adcsPassword = newPassword();
  await writeFileAtomic(paths.adminPasswordFile, `${adminPassword}\n`, { mode: 0o600 });
  await writeFileAtomic(paths.adcsPasswordFile, `${adcsPassword}\n`, { mode: 0o600 });

  const instanceCert = join(paths.instanceDir, 'instance.pem');
  const instanceKey = join(paths.instanceDir, 'instance.key');
  await writeFileAtomic(instanceCert, instanceTls.certPem + ca.intermediate.certPem);
  await writeFileAtomic(instanceKey, instanceTls.keyPem, { mode: 0o600 });
  const instanceConfig = join(paths.instanceDir, 'instance.json');
  await writeFileAtomic(instanceConfig, `${JSON.stringify({
    tls: { certFile: instanceCert, keyFile: instanceKey },
    host: '127.0.0.1', port: options.portBase ?? 0,
    admin: { username: ADMIN_USER, passwordFile: paths.adminPasswordFile },
    publishDelayMs: options.publishDelayMs, publishWord: options.publishWord, timeScale: options.timeScale,
    // The legacy "silent this long" rule of an instance from before the protocol's monitor: never shorter than 3 polls.
    downAfterMs: options.downAfterMs ?? Math.max(15_000, 3 * pollMsOf(options)),
    stateFile: join(paths.instanceDir, 'instance-state.json'), logFile: join(paths.logsDir, 'instance.log'),
  }, null, 2)}\n`, { mode: 0o600 });

  const adcsCert = join(paths.adcsDir, 'adcs.pem');
  const adcsKey = join(paths.adcsDir, 'adcs.key');
  await writeFileAtomic(adcsCert, adcsTls.certPem + ca.intermediate.certPem);
  await writeFileAtomic(adcsKey, adcsTls.keyPem, { mode: 0o600 });
  const templates: Record<string, TemplateConfig> = { ...DEFAULT_TEMPLATES };
  templates[ADCS_TEMPLATE] = { ...(DEFAULT_TEMPLATES[ADCS_TEMPLATE] as TemplateConfig), mode: options.adcsTemplateMode };
  const adcsConfig = join(paths.adcsDir, 'adcs.json');
  await writeFileAtomic(adcsConfig, `${JSON.stringify({
    caDir: paths.caDir, host: '127.0.0.1', port: options.portBase === null ? 0 : options.portBase + 1,
    tls: { certFile: adcsCert, keyFile: adcsKey }, stateFile: join(paths.adcsDir, 'adcs-state.json'),
    users: [{ username: ADCS_USER, passwordEnv: ADCS_PASSWORD_ENV }], clientCaFile: paths.chainFile, templates,
  }, null, 2)}\n`, { mode: 0o600 });
  return { ca, adminPassword, adcsPassword, instanceConfig, adcsConfig };
}

function initialState(paths: LabPaths, options: UpOptions): LabState {
  const now = new Date().toISOString();
  return {
    format: LAB_FORMAT, dir: paths.dir, state: 'starting', createdAt: now, updatedAt: now, launcher: LAUNCHER,
    options: {
      mids: options.mids, leafDays: options.leafDays, publishDelayMs: options.publishDelayMs, publishWord: options.publishWord,
      heartbeatMs: pollMsOf(options), downAfterMs: options.downAfterMs ?? Math.max(15_000, 3 * pollMsOf(options)),
      timeScale: options.timeScale, auth: options.auth ?? 'mutual', portBase: options.portBase, adcsTemplateMode: options.adcsTemplateMode,
      withAgents: options.withAgents ?? false,
    },
    caFile: paths.caFile,
    chainFile: paths.chainFile,
    instance: {
      url: null, port: null, username: ADMIN_USER, passwordFile: paths.adminPasswordFile,
      logFile: join(paths.logsDir, 'instance.log'), stateFile: join(paths.instanceDir, 'instance-state.json'),
    },
    adcs: { url: null, port: null, username: ADCS_USER, passwordFile: paths.adcsPasswordFile, template: ADCS_TEMPLATE, stateFile: join(paths.adcsDir, 'adcs-state.json') },
    runner: { socket: paths.socket, heartbeatMs: pollMsOf(options), timeScale: options.timeScale },
    processes: {},
    mids: [],
  };
}

const URL_LINE = /^\{"url":"[^"\n]+"\}$/m;
const RUNNER_LINE = /^mid-runner: listening on .*$/m;
const AGENTS_LINE = /^midcert-lab-agents: serving \d+ agents .*$/m;

/**
 * --with-agents, once every MID is Up: the controller data dir and the agents' files (agents.ts),
 * then the agents process (lab/agents-main.ts, one daemon per MID), then a GetStatus over mutual
 * TLS to each agent, dialled exactly as the controller dials it.
 */
async function startAgents(state: LabState, paths: LabPaths, mids: LabMid[], controllerDir: string, options: UpOptions, progress: (line: string) => void): Promise<void> {
  const { DEFAULT_AGENT_SETTLE_SECONDS, setUpAgents, waitAgentsAnswer } = await import('./agents.js');
  progress(`making the controller data dir ${controllerDir} and ${mids.length} agent identities`);
  const settleSeconds = options.agentSettleSeconds ?? DEFAULT_AGENT_SETTLE_SECONDS;
  // Recorded first, so a later `up` also clears a controller dir this one left half made.
  state.agents = { controllerDir, listFile: join(paths.agentsDir, 'agents.json'), logFile: join(paths.logsDir, 'agents.log'), settleSeconds, list: [] };
  await writeLabState(state);
  const agents = await setUpAgents(paths, mids, { controllerDir, settleSeconds, instanceUrl: state.instance.url as string, adminUser: ADMIN_USER, parallel: options.parallel, timeScale: options.timeScale });
  state.agents = agents;
  await writeLabState(state);
  progress(`starting ${mids.length} agent daemon(s) in one process`);
  const spawned = await spawnDetached([...labProgramArgv('agents-main'), '--list', agents.listFile, '--log', agents.logFile], { log: join(paths.logsDir, 'agents.out'), cwd: paths.dir });
  state.processes.agents = spawned.record;
  await writeLabState(state);
  await waitForReady(spawned, 'lab agents process', AGENTS_LINE, options.timeoutMs);
  progress('waiting for every agent to answer GetStatus over mutual TLS');
  const alive = (): boolean => spawned.child.exitCode === null && spawned.child.signalCode === null;
  await waitAgentsAnswer(agents.controllerDir, agents.list, options.timeoutMs, alive);
}

async function bringUp(state: LabState, paths: LabPaths, prepared: Prepared, options: UpOptions, progress: (line: string) => void): Promise<LabMid[]> {
  progress('starting the instance, ADCS and the MID runner');
  const launch = async (part: LabPart, program: string, args: string[], env?: NodeJS.ProcessEnv): Promise<SpawnedPart> => {
    const spawned = await spawnDetached([...labProgramArgv(program), ...args], { log: join(paths.logsDir, `${part}.out`), cwd: paths.dir, ...(env ? { env } : {}) });
    state.processes[part] = spawned.record;
    return spawned;
  };
  const instance = await launch('instance', 'instance/main', [prepared.instanceConfig]);
  const adcs = await launch('adcs', 'adcs/main', [prepared.adcsConfig], { ...process.env, [ADCS_PASSWORD_ENV]: prepared.adcsPassword });
  const runner = await launch('runner', 'mid/runner-main', ['--socket', paths.socket, '--ca-file', paths.caFile, '--time-scale', String(options.timeScale),
    '--log-format', options.midLogFormat ?? 'old']);
  await writeLabState(state);

  const [instanceReady, adcsReady] = await allOrFirstError([
    waitForReady(instance, 'lab instance', URL_LINE, options.timeoutMs),
    waitForReady(adcs, 'lab ADCS', URL_LINE, options.timeoutMs),
    waitForReady(runner, 'MID runner', RUNNER_LINE, options.timeoutMs),
  ]);
  const instanceUrl = (JSON.parse(instanceReady![0]) as { url: string }).url;
  const adcsUrl = (JSON.parse(adcsReady![0]) as { url: string }).url;
  state.instance.url = instanceUrl;
  state.instance.port = Number(new URL(instanceUrl).port);
  state.adcs.url = adcsUrl;
  state.adcs.port = Number(new URL(adcsUrl).port);
  await writeLabState(state);

  const rest = new InstanceRest(instanceUrl, { username: ADMIN_USER, password: prepared.adminPassword }, prepared.ca.root.certPem);
  try {
    const ping = await rest.call('GET', '/adcv2/server', undefined, false);
    if (ping.status !== 200) throw new MidcertError('LAB_START_FAILED', `the lab instance answers GET /adcv2/server with HTTP ${ping.status}`);
    await checkAdcs(adcsUrl, prepared.adcsPassword, prepared.ca.root.certPem);

    progress('publishing the lab CA chain on the instance');
    const chain = await rest.uploadCertificate('sys_ca_certificate', prepared.ca.chainPem, {
      name: 'midcert Lab CA chain', short_description: 'midcert Lab Issuing CA and Root CA (lab/cli.ts)',
    });
    await rest.waitPublished('sys_ca_certificate', chain['sys_id'] as string, options.publishDelayMs + options.timeoutMs);

    const names = midNames(options.mids);
    progress(`setting up ${names.length} MID host(s), ${options.parallel} at a time`);
    // Host set-up (a keytool JVM each) is limited; waiting for each leaf to publish and starting
    // the MID is not, so a slot never idles through the publish delay.
    const starting: Promise<LabMid>[] = [];
    await mapLimit(names, options.parallel, async (name) => {
      const host = await setUpMid(name, rest, paths, prepared.ca, options);
      const started = startMid(host, rest, paths.socket, options);
      started.catch(() => undefined); // awaited below; must not count as unhandled meanwhile
      starting.push(started);
    });
    const mids = (await allOrFirstError(starting) as LabMid[]).sort((a, b) => a.name.localeCompare(b.name));
    state.mids = mids;
    await writeLabState(state);
    if (mids.length > 0) {
      progress('waiting for every MID to read Up on the instance');
      await waitMidsUp(rest, mids, paths.socket, options.timeoutMs);
    }
    return mids;
  } finally {
    rest.close();
  }
}

/** Like Promise.all, but waits for every promise to settle so nothing is left running unobserved. */
async function allOrFirstError<T>(promises: Promise<T>[]): Promise<(T | undefined)[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
}

/** Proves the ADCS answers and the generated credentials work: certcarc.asp with Basic auth. */
function checkAdcs(url: string, password: string, caPem: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/certcarc.asp`, {
      agent: false, ca: caPem, timeout: 15_000,
      headers: { Authorization: `Basic ${Buffer.from(`${ADCS_USER}:${password}`).toString('base64')}`, 'User-Agent': 'Mozilla/5.0 (compatible; midcert-lab)' },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => {
        if (res.statusCode === 200 && /nRenewals/.test(body)) resolve();
        else reject(new MidcertError('LAB_START_FAILED', `the lab ADCS answers certcarc.asp with HTTP ${res.statusCode}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', (err) => reject(new MidcertError('LAB_START_FAILED', `the lab ADCS does not answer: ${err.message}`)));
    req.end();
  });
}

/**
 * One MID host. mutual: service user with mid_server, a short-lived lab leaf published for it
 * (attachment first), the host tree in mutual-auth mode with the leaf imported by
 * manage-certificates.sh. basic: service user with mid_server and a password, the host tree as
 * freshly installed with those credentials in config.xml and no key pair yet (the MID makes it on
 * its first start). Either way the unit is registered in the runner.
 */
async function setUpMid(name: string, rest: InstanceRest, paths: LabPaths, ca: LabCa, options: UpOptions): Promise<{ mid: LabMid; leafRecord?: string }> {
  const userName = `mid.${name}`;
  const home = join(paths.midsDir, name);
  if (options.auth === 'basic') {
    const password = newPassword();
    const user = await rest.insert('sys_user', { user_name: userName, name: `MID Server ${name}`, active: 'true', user_password: password });
    const userSysId = user['sys_id'] as string;
    await rest.insert('sys_user_has_role', { user: userSysId, role: 'mid_server' });
    await createMidHost({ home, name, instanceUrl: `${rest.url}/`, auth: { username: userName, password } });
    await control(paths.socket, { verb: 'register', unit: name, home });
    return { mid: { name, home, unit: name, user: userName, userSysId, leafSha256: '', leafNotAfter: '', auth: 'basic' } };
  }
  const user = await rest.insert('sys_user', { user_name: userName, name: `MID Server ${name}`, active: 'true' });
  const userSysId = user['sys_id'] as string;
  await rest.insert('sys_user_has_role', { user: userSysId, role: 'mid_server' });
  const leaf = await ca.issueIdentity(`CN=${name},O=midcert Lab`, PROFILES.client, { days: options.leafDays });
  const record = await rest.uploadCertificate('sys_user_certificate', leaf.certPem, {
    name: `${name} client certificate`, user: userSysId, short_description: `MID Server ${name} (lab/cli.ts up)`,
  });
  await createMidHost({
    home, name, instanceUrl: `${rest.url}/`, auth: 'mutual',
    bundlePem: leaf.certPem + ca.intermediate.certPem + ca.root.certPem + leaf.keyPem,
  });
  await control(paths.socket, { verb: 'register', unit: name, home });
  const mid: LabMid = { name, home, unit: name, user: userName, userSysId, leafSha256: leaf.cert.sha256, leafNotAfter: leaf.cert.notAfter.toISOString(), auth: 'mutual' };
  return { mid, leafRecord: record['sys_id'] as string };
}

/** Starts the MID's unit once its leaf reads published (mutual); a basic MID records the self-signed pair it made. */
async function startMid(host: { mid: LabMid; leafRecord?: string }, rest: InstanceRest, socket: string, options: UpOptions): Promise<LabMid> {
  const { mid } = host;
  if (host.leafRecord !== undefined) await rest.waitPublished('sys_user_certificate', host.leafRecord, options.publishDelayMs + options.timeoutMs);
  const started = await control(socket, { verb: 'start', unit: mid.unit });
  if (started.status && started.status.state !== 'active') {
    throw new MidcertError('LAB_START_FAILED', `MID ${mid.name} did not start (${started.status.state}): ${started.status.lastError ?? 'see its agent log'} (${mid.home}/agent/logs/agent0.log.0)`);
  }
  if (mid.auth === 'basic' && started.status?.leaf) {
    mid.leafSha256 = started.status.leaf.sha256;
    mid.leafNotAfter = started.status.leaf.notAfter;
  }
  return mid;
}

async function control(socket: string, req: ControlRequest): Promise<Extract<ControlResponse, { ok: true }>> {
  const res = await sendControlRequest(socket, req, 30_000).catch((err: Error) => {
    throw new MidcertError('LAB_START_FAILED', `the MID runner did not answer ${req.verb}: ${err.message}`);
  });
  if (!res.ok) throw new MidcertError('LAB_START_FAILED', `the MID runner refused ${req.verb}${'unit' in req ? ` ${req.unit}` : ''}: ${res.error.message}`);
  return res;
}

/** Polls ecc_agent until every MID reads Up; on timeout names the ones that did not, with the runner's last error. */
async function waitMidsUp(rest: InstanceRest, mids: LabMid[], socket: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const names = mids.map((m) => m.name);
  for (;;) {
    const rows = await rest.query('ecc_agent', `nameIN${names.join(',')}`, ['name', 'status']);
    const up = new Set(rows.filter((r) => r['status'] === 'Up').map((r) => r['name']));
    const notUp = names.filter((n) => !up.has(n));
    if (notUp.length === 0) return;
    if (Date.now() > deadline) {
      const units = await sendControlRequest(socket, { verb: 'list' }, 5000).then((r) => (r.ok ? r.units ?? [] : []), () => [] as MidStatus[]);
      const why = (name: string): string => {
        const unit = units.find((u) => u.unit === name);
        return unit ? `${name} (${unit.state}${unit.lastError ? `: ${unit.lastError}` : ''})` : name;
      };
      const shown = notUp.slice(0, 5).map(why).join('; ');
      const more = notUp.length > 5 ? `; and ${notUp.length - 5} more` : '';
      throw new MidcertError('LAB_START_FAILED', `${notUp.length} of ${names.length} MIDs did not come Up within ${timeoutMs} ms: ${shown}${more}`);
    }
    await sleep(250);
  }
}

/** Runs `work` over `items` with at most `limit` at once; fails with the first error after the rest settle. */
export async function mapLimit<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.error;
  return results;
}

export function launcherPath(): string {
  return join(REPO_ROOT, 'bin', 'midcert-lab');
}

function result(state: LabState, paths: LabPaths, prepared: Prepared, mids: LabMid[], startedAt: number): UpResult {
  const bin = launcherPath();
  const verb = (v: string, name: string): string[] => [bin, 'mid', v, '--dir', paths.dir, name];
  const pids: Partial<Record<LabPart, number>> = {};
  for (const [part, proc] of Object.entries(state.processes)) if (proc) pids[part as LabPart] = proc.pid;
  return {
    dir: paths.dir,
    instance: { url: state.instance.url as string, username: ADMIN_USER, password: prepared.adminPassword, passwordFile: paths.adminPasswordFile },
    adcs: {
      url: state.adcs.url as string, username: ADCS_USER, password: prepared.adcsPassword, passwordFile: paths.adcsPasswordFile,
      template: ADCS_TEMPLATE, templateMode: state.options.adcsTemplateMode,
    },
    auth: state.options.auth ?? 'mutual',
    mids: mids.map((m) => ({
      name: m.name, home: m.home, unit: m.unit, user: m.user, leafNotAfter: m.leafNotAfter, auth: m.auth ?? 'mutual',
      service: { start: verb('start', m.name), stop: verb('stop', m.name), status: verb('is-active', m.name) },
    })),
    caFile: paths.caFile,
    chainFile: paths.chainFile,
    runner: { socket: paths.socket },
    pids,
    logsDir: paths.logsDir,
    elapsedMs: Date.now() - startedAt,
    ...(state.agents ? {
      controller: {
        dataDir: state.agents.controllerDir, configFile: join(state.agents.controllerDir, 'controller.yaml'), fleetCaFile: join(state.agents.controllerDir, 'fleet', 'ca.pem'),
      },
      agents: state.agents.list.map((a) => ({ name: a.name, address: a.address, config: a.config, socket: a.socket, stateDir: a.stateDir })),
    } : {}),
  };
}
