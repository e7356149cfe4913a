import { open, readFile, rm, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { isRunning, pidExists, type LabProcess } from './processes.js';

/**
 * A lab directory and its record, `DIR/lab.json`: what `up` started (pids, URLs, ports, paths),
 * which `down`, `status` and `mid` read. It never holds a password, only the paths of the 0600
 * files that do.
 */

export const LAB_FORMAT = 'midcert-lab/1';

export type LabPart = 'instance' | 'adcs' | 'runner' | 'agents';
/** Stop order: the agents first (they drive the MIDs), then the MIDs, then ADCS and the instance. */
export const LAB_PARTS: readonly LabPart[] = ['agents', 'runner', 'adcs', 'instance'];

/** The parts a lab of this shape runs: `agents` only when it was started with --with-agents. */
export function expectedParts(state: LabState): LabPart[] {
  return LAB_PARTS.filter((part) => part !== 'agents' || state.agents !== undefined);
}

/** One lab agent (a midcert-agent daemon hosted by the agents process) as recorded in lab.json. */
export interface LabAgent {
  name: string;
  /** 127.0.0.1:<port>, the controller's mTLS address. */
  address: string;
  port: number;
  /** DIR/agents/<name>/agent.yaml. */
  config: string;
  /** The daemon's host-local Unix socket. */
  socket: string;
  stateDir: string;
}

/** What --with-agents adds to a lab. */
export interface LabAgents {
  /** The controller data dir (controller.yaml, midcert.db, fleet/). */
  controllerDir: string;
  /** The JSON list of agent config paths the agents process reads. */
  listFile: string;
  /** The agents' JSON log (pino), one line per event, each with its agent's name. */
  logFile: string;
  settleSeconds: number;
  list: LabAgent[];
}

export interface LabMid {
  name: string;
  /** Install root; holds agent/. */
  home: string;
  /** The runner's unit name (the same as the MID name). */
  unit: string;
  /** The MID's service user (sys_user.user_name), holding mid_server. */
  user: string;
  userSysId: string;
  /** The client leaf installed at `up` (basic: the MID's self-signed pair from its first start). */
  leafSha256: string;
  leafNotAfter: string;
  /** How it authenticates (absent in a lab.json from before --auth: mutual). */
  auth?: 'mutual' | 'basic';
}

export interface LabState {
  format: typeof LAB_FORMAT;
  dir: string;
  state: 'starting' | 'running' | 'stopped' | 'failed';
  createdAt: string;
  updatedAt: string;
  /** How the child processes were launched: the TypeScript sources through tsx, or dist/. */
  launcher: 'source' | 'dist';
  options: {
    mids: number; leafDays: number; publishDelayMs: number; publishWord: 'Exists' | 'Active'; heartbeatMs: number;
    downAfterMs: number; portBase: number | null; adcsTemplateMode: 'issue' | 'pending' | 'deny';
    /** The one timing factor (absent in a lab.json from before --time-scale: the poll was heartbeatMs). */
    timeScale?: number;
    /** --auth (absent before the option: mutual). */
    auth?: 'mutual' | 'basic';
    /** Started with --with-agents (absent in a lab.json from before the option). */
    withAgents?: boolean;
  };
  caFile: string;
  chainFile: string;
  instance: { url: string | null; port: number | null; username: string; passwordFile: string; logFile: string; stateFile: string };
  adcs: { url: string | null; port: number | null; username: string; passwordFile: string; template: string; stateFile: string };
  /** heartbeatMs = the MIDs' poll period (40 s × timeScale). */
  runner: { socket: string; heartbeatMs: number; timeScale?: number };
  processes: Partial<Record<LabPart, LabProcess>>;
  mids: LabMid[];
  /** Present when the lab was started with --with-agents. */
  agents?: LabAgents;
}

export interface LabPaths {
  dir: string;
  file: string;
  lock: string;
  caDir: string;
  caFile: string;
  chainFile: string;
  secretsDir: string;
  adminPasswordFile: string;
  adcsPasswordFile: string;
  instanceDir: string;
  adcsDir: string;
  midsDir: string;
  logsDir: string;
  runDir: string;
  socket: string;
  agentsDir: string;
  /** The default controller data dir of --with-agents. */
  controllerDir: string;
}

/** Paths inside a lab directory (whether or not they exist yet). */
export function labPaths(dirText: string): LabPaths {
  const dir = resolve(dirText);
  const secretsDir = join(dir, 'secrets');
  const runDir = join(dir, 'run');
  return {
    dir,
    file: join(dir, 'lab.json'),
    lock: join(dir, '.lab.lock'),
    caDir: join(dir, 'ca'),
    caFile: join(dir, 'ca', 'root.pem'),
    chainFile: join(dir, 'ca', 'chain.pem'),
    secretsDir,
    adminPasswordFile: join(secretsDir, 'instance-admin.password'),
    adcsPasswordFile: join(secretsDir, 'adcs.password'),
    instanceDir: join(dir, 'instance'),
    adcsDir: join(dir, 'adcs'),
    midsDir: join(dir, 'mids'),
    logsDir: join(dir, 'logs'),
    runDir,
    socket: join(runDir, 'mid-runner.sock'),
    agentsDir: join(dir, 'agents'),
    controllerDir: join(dir, 'controller'),
  };
}

/** What `up` creates in DIR besides lab.json; a fresh `up` over a stopped lab removes exactly these. */
export function labOwnedPaths(paths: LabPaths): string[] {
  return [
    paths.caDir, paths.secretsDir, paths.instanceDir, paths.adcsDir, paths.midsDir, paths.agentsDir, paths.controllerDir, paths.logsDir, paths.runDir,
    paths.file,
  ];
}

const MAX_STATE_BYTES = 4 * 1024 * 1024;

/** Reads DIR/lab.json; undefined when there is none. A file that is not ours is an error. */
export async function readLabState(dir: string): Promise<LabState | undefined> {
  const file = labPaths(dir).file;
  let text: string;
  try {
    if ((await stat(file)).size > MAX_STATE_BYTES) throw new MidcertError('INPUT_TOO_LARGE', `${file} is larger than ${MAX_STATE_BYTES} bytes`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof MidcertError) throw err;
    throw new MidcertError('INPUT_UNREADABLE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let state: LabState;
  try {
    state = JSON.parse(text) as LabState;
  } catch {
    throw new MidcertError('CONFIG_INVALID', `${file} is not JSON`);
  }
  if (state?.format !== LAB_FORMAT || typeof state.processes !== 'object' || !Array.isArray(state.mids)) {
    throw new MidcertError('CONFIG_INVALID', `${file} is not a midcert lab record (format ${LAB_FORMAT})`);
  }
  return state;
}

/** Reads DIR/lab.json or fails with LAB_NOT_FOUND. */
export async function requireLabState(dir: string): Promise<LabState> {
  const state = await readLabState(dir);
  if (!state) throw new MidcertError('LAB_NOT_FOUND', `no lab in ${resolve(dir)} (no lab.json); start one with: midcert-lab up --dir ${dir}`);
  return state;
}

export async function writeLabState(state: LabState): Promise<void> {
  state.updatedAt = new Date().toISOString();
  await writeFileAtomic(labPaths(state.dir).file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/** The recorded processes that still run (the same process: pid and start time match). */
export async function runningParts(state: LabState): Promise<LabPart[]> {
  const parts: LabPart[] = [];
  for (const part of LAB_PARTS) {
    const proc = state.processes[part];
    if (proc && (await isRunning(proc))) parts.push(part);
  }
  return parts;
}

/**
 * A lock file held while `up` or `down` works on DIR, so two of them never interleave. A lock
 * left by a process that no longer runs is taken over.
 */
export async function acquireLabLock(dir: string): Promise<() => Promise<void>> {
  const file = labPaths(dir).lock;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => { await unlink(file).catch(() => undefined); };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new MidcertError('OUTPUT_FAILED', `cannot create ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const holder = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidExists(holder)) {
        throw new MidcertError('LAB_RUNNING', `another midcert-lab command (pid ${holder}) is working on ${dir}; wait for it or remove ${file} if it is stale`);
      }
      await rm(file, { force: true });
    }
  }
  throw new MidcertError('LAB_RUNNING', `cannot take the lock ${file}`);
}

