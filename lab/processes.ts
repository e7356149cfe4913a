import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MidcertError } from '../common/errors.js';

/**
 * The lab's background processes: how to launch a lab program (compiled or through tsx, the way
 * bin/midcert-lab itself runs), detached with its output in a log file; how to tell it is ready
 * from that file; and how to stop it without ever signalling a stranger that reused its pid.
 */

export interface LabProcess {
  pid: number;
  /** /proc start time (clock ticks since boot); tells the recorded process from a later one with the same pid. */
  startTime: string | null;
  /** The argument vector it was started with (no secrets: those travel in files or the environment). */
  argv: string[];
  /** stdout and stderr. */
  log: string;
  startedAt: string;
}

const HERE = dirname(fileURLToPath(import.meta.url));
/** Running compiled (dist/lab/*.js) or from the TypeScript sources (lab/*.ts). */
export const LAUNCHER: 'dist' | 'source' = fileURLToPath(import.meta.url).endsWith('.js') ? 'dist' : 'source';

/** The repository root (where bin/ and node_modules/ are). */
export const REPO_ROOT = LAUNCHER === 'dist' ? resolve(HERE, '..', '..') : resolve(HERE, '..');

/** `node [--import tsx] <lab program>`: the argument vector for a program under lab/ (e.g. 'instance/main'). */
export function labProgramArgv(program: string): string[] {
  if (LAUNCHER === 'dist') return [process.execPath, join(HERE, `${program}.js`)];
  const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs');
  if (!existsSync(tsx)) throw new MidcertError('LAB_START_FAILED', `running from sources needs ${tsx} (npm ci), or build with make build`);
  return [process.execPath, '--import', tsx, join(HERE, `${program}.ts`)];
}

export interface SpawnedPart {
  child: ChildProcess;
  record: LabProcess;
}

/**
 * Starts a program detached from us (own session and process group, no terminal), stdout and
 * stderr appended to `log`, and lets this process exit without waiting for it.
 */
export async function spawnDetached(argv: string[], options: { log: string; cwd: string; env?: NodeJS.ProcessEnv }): Promise<SpawnedPart> {
  const [file, ...args] = argv as [string, ...string[]];
  const out = await open(options.log, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(file, args, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: ['ignore', out.fd, out.fd], windowsHide: true });
  } finally {
    await out.close();
  }
  child.unref();
  if (child.pid === undefined) {
    const error = await new Promise<Error>((done) => child.once('error', done));
    throw new MidcertError('LAB_START_FAILED', `cannot start ${file}: ${error.message}`);
  }
  child.on('error', () => undefined);
  return { child, record: { pid: child.pid, startTime: await processStartTime(child.pid), argv, log: options.log, startedAt: new Date().toISOString() } };
}

/**
 * Waits until the log file holds a line matching `ready`, and returns the match. Fails when the
 * process exits first or the time is up, quoting the last line it wrote.
 */
export async function waitForReady(part: SpawnedPart, what: string, ready: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(part.record.log, 'utf8').catch(() => '');
    const match = ready.exec(text);
    if (match) return match;
    const exited = part.child.exitCode !== null || part.child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      const last = lastLine(text);
      const how = exited ? `exited (${part.child.exitCode ?? part.child.signalCode}) before it was ready` : `was not ready within ${timeoutMs} ms`;
      throw new MidcertError('LAB_START_FAILED', `the ${what} ${how}${last ? `: ${last}` : ''} (log: ${part.record.log})`);
    }
    await sleep(50);
  }
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines[lines.length - 1] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Field 22 of /proc/<pid>/stat, or null where there is no /proc. */
export async function processStartTime(pid: number): Promise<string | null> {
  const stat = await readProcStat(pid);
  return stat ? stat.startTime : null;
}

async function readProcStat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // "pid (comm) state ppid ..." — comm may hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
}

/** True when the recorded process still runs: the pid exists, is not a zombie, and started when we recorded. */
export async function isRunning(proc: LabProcess): Promise<boolean> {
  if (!pidExists(proc.pid)) return false;
  const stat = await readProcStat(proc.pid);
  if (!stat) return !existsSync('/proc/self/stat'); // no /proc on this system: the pid is all we have
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return proc.startTime === null || stat.startTime === proc.startTime;
}

export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Signals the process group the part leads (it was started detached), falling back to the pid alone. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

export type StopOutcome = 'not-running' | 'stopped' | 'killed';

/**
 * SIGTERM, wait up to `graceMs` for it to exit, then SIGKILL (the whole group). Only the process
 * we recorded is signalled: a pid now held by another program is left alone.
 */
export async function stopProcess(proc: LabProcess, graceMs: number): Promise<StopOutcome> {
  if (!(await isRunning(proc))) return 'not-running';
  signal(proc.pid, 'SIGTERM');
  let outcome: StopOutcome = 'stopped';
  if (!(await waitGone(proc, graceMs))) {
    signal(proc.pid, 'SIGKILL');
    if (!(await waitGone(proc, 5000))) {
      throw new MidcertError('LAB_STOP_FAILED', `process ${proc.pid} (${proc.argv[proc.argv.length - 1] ?? '?'}) survived SIGKILL`);
    }
    outcome = 'killed';
  }
  // The leader is gone; nothing else should remain in its group, but make sure.
  if (groupExists(proc.pid)) signal(proc.pid, 'SIGKILL');
  await waitReaped(proc, REAP_WAIT_MS);
  return outcome;
}

/**
 * A detached child whose parent (`up`) has exited is reaped by init, which on some systems (e.g.
 * a container's pid 1) does it only every second or so; until then the pid still answers
 * `kill(pid, 0)`. Callers check exactly that, so wait (bounded) until the zombie is gone.
 */
const REAP_WAIT_MS = 5000;

async function waitReaped(proc: LabProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pidExists(proc.pid) && Date.now() < deadline) {
    const stat = await readProcStat(proc.pid);
    if (stat && stat.state !== 'Z' && stat.state !== 'X') return; // the pid belongs to someone else now
    await sleep(50);
  }
}

/** Waits (bounded) until the recorded process no longer runs (it may still await reaping). */
export async function waitGone(proc: LabProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isRunning(proc)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}
