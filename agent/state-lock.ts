import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { ensurePrivateDir } from './windows/acl.js';

/**
 * The state-dir lock, so the daemon and a host-local `midcert-agent install` never change the MID
 * at the same time.
 *
 * Layout: `stateDir/agent.lock/` is a directory holding one `owner-<token>.json` (mode 0600):
 * `{"pid","startTime","bootId","since","what"}` — `startTime` is field 22 of /proc/<pid>/stat
 * (clock ticks after boot) and `bootId` is /proc/sys/kernel/random/boot_id, both as strings.
 *
 * Held means: a process with that pid exists AND (where /proc exists) has that start time AND
 * this is the same boot. A pid the kernel handed to another process after a reboot or a kill -9
 * (pid 1, say) does not keep the lock. A lock naming this very process is taken over too: within
 * one process the RenewalEngine serializes its own operations, so such a lock was left by an
 * operation that will never finish. An owner file that does not parse is stale; its content is
 * never shown.
 *
 * Without /proc (macOS, Windows) there is no start time or boot id: the lock falls back to
 * "held while a process with that pid exists" (kill(pid, 0)), so there a pid reused after a crash
 * keeps the lock until that process ends — remove `agent.lock` by hand once no agent runs. The
 * same conservative answer is given when the holder's pid exists but its /proc entry cannot be
 * read (/proc mounted with hidepid and a holder of another user).
 *
 * Race-free without an OS lock primitive, by only ever using operations that cannot destroy a
 * lock someone else holds:
 *  - taking: the owner file is written in a private staging directory, which is then renamed to
 *    `agent.lock`. rename(2) onto an existing non-empty directory fails (ENOTEMPTY/EEXIST), so of
 *    two processes arriving at once exactly one succeeds, and the lock appears complete;
 *  - taking over a stale lock: unlink that owner's file by its name (the token is random per
 *    acquisition, so no fresh lock ever has it), then rmdir(2) `agent.lock`, which only removes an
 *    empty directory — if someone took the lock in between, it holds their owner file and stays;
 *  - releasing: the same two steps for our own owner file.
 * A regular file at `agent.lock` is a lock from an earlier midcert (`pid\nwhat\n`); it is held while
 * that pid runs, started before the file was written, in this boot, and removed otherwise (unlink
 * never removes a directory, so it cannot remove a new-style lock).
 */
export async function acquireStateLock(stateDir: string, what: string): Promise<() => Promise<void>> {
  // On Windows a state dir created here gets the owner + SYSTEM + Administrators ACL (agent/windows/acl.ts).
  await ensurePrivateDir(stateDir).catch((err: unknown) => { throw unusable(stateDir, err); });
  const lockDir = join(stateDir, LOCK_NAME);
  const token = randomBytes(12).toString('hex');
  const ownerName = `${OWNER_PREFIX}${token}.json`;
  const self = await selfIdentity();
  const owner: LockOwner = { pid: process.pid, ...self, since: isoSeconds(new Date()), what: printable(what) || 'working' };
  const staged = join(stateDir, `.${LOCK_NAME}.${token}.tmp`);
  try {
    await mkdir(staged, { mode: 0o700 });
    await writeFileAtomic(join(staged, ownerName), `${JSON.stringify(owner)}\n`, { mode: 0o600 });
  } catch (err) {
    await rm(staged, { recursive: true, force: true }).catch(() => undefined);
    throw unusable(stateDir, err);
  }
  try {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      try {
        await rename(staged, lockDir);
        return () => releaseLock(lockDir, ownerName);
      } catch (err) {
        if (!isContention(err)) throw unusable(stateDir, err);
      }
      await clearIfStale(lockDir, self);
    }
    throw new MidcertError('RENEWAL_BUSY', `the state-dir lock ${lockDir} changed hands ${MAX_ATTEMPTS} times while this process tried to take it; try again`);
  } finally {
    await rm(staged, { recursive: true, force: true }).catch(() => undefined); // gone after a successful rename
  }
}

const LOCK_NAME = 'agent.lock';
const OWNER_PREFIX = 'owner-';
const MAX_ATTEMPTS = 8;
const MAX_LOCK_BYTES = 4096;
/** Linux reports /proc/<pid>/stat times in USER_HZ, which is 100 on every architecture a MID runs on. */
const USER_HZ = 100;

interface ProcessIdentity {
  /** /proc/<pid>/stat field 22; absent without /proc. */
  startTime?: string;
  bootId?: string;
}

interface LockOwner extends ProcessIdentity {
  pid: number;
  /** When the lock was taken (ISO-8601 UTC, seconds). */
  since: string;
  what: string;
}

async function releaseLock(lockDir: string, ownerName: string): Promise<void> {
  await unlink(join(lockDir, ownerName)).catch(() => undefined); // already taken over: nothing of ours left
  await rmdir(lockDir).catch(() => undefined); // ENOTEMPTY: someone took the lock in between; it stays theirs
}

/** Throws RENEWAL_BUSY when a live process holds the lock; otherwise removes what is stale. */
async function clearIfStale(lockDir: string, self: ProcessIdentity): Promise<void> {
  const info = await lstat(lockDir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(unusable(lockDir, err))));
  if (!info) return; // released meanwhile: try again
  if (!info.isDirectory()) {
    const legacy = parseLegacyLock(await readSmall(lockDir));
    if (legacy && (await legacyHeld(legacy.pid, info.mtimeMs))) {
      throw busy({ pid: legacy.pid, since: isoSeconds(info.mtime), what: legacy.what });
    }
    await unlink(lockDir).catch(() => undefined); // EISDIR/EPERM: replaced by a new-style lock meanwhile
    return;
  }
  const entries = await readdir(lockDir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(unusable(lockDir, err))));
  for (const name of entries) {
    const path = join(lockDir, name);
    const owner = name.startsWith(OWNER_PREFIX) && name.endsWith('.json') ? parseOwner(await readSmall(path)) : undefined;
    if (owner && (await isHeld(owner, self))) throw busy(owner);
    // A stale owner, or something that is no owner file at all. No live lock ever has this name.
    await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }
  await rmdir(lockDir).catch(() => undefined); // not empty: taken meanwhile, the next rename says by whom
}

async function isHeld(owner: LockOwner, self: ProcessIdentity): Promise<boolean> {
  if (owner.pid === process.pid) return false; // this process, or one before it with the same pid
  if (owner.bootId && self.bootId && owner.bootId !== self.bootId) return false; // written before a reboot
  if (self.startTime !== undefined && owner.startTime !== undefined) {
    const now = await startTimeOf(owner.pid);
    if (now !== undefined) return now === owner.startTime;
  }
  return pidExists(owner.pid); // no /proc, or its entry is hidden: the pid check alone
}

async function legacyHeld(pid: number, writtenAtMs: number): Promise<boolean> {
  if (pid === process.pid || !pidExists(pid)) return false;
  const started = await startedAtMs(pid);
  if (started === undefined) return true; // no /proc: the pid check alone
  return started <= writtenAtMs + 2000; // a process started after the file was written did not write it
}

function busy(owner: Pick<LockOwner, 'pid' | 'since' | 'what'>): MidcertError {
  return new MidcertError('RENEWAL_BUSY', `another midcert-agent process holds the state-dir lock (pid ${owner.pid}, started ${owner.since}): ${printable(owner.what) || 'working'}`);
}

function unusable(path: string, err: unknown): MidcertError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'error';
  return new MidcertError('STATE_DIR_UNUSABLE', `cannot take the state-dir lock at ${path}: ${code}`, { cause: err });
}

function isContention(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // ENOTEMPTY/EEXIST: a lock directory is there; ENOTDIR: an earlier midcert's lock file; Windows
  // refuses renaming onto any existing directory with EPERM.
  return code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || (code === 'EPERM' && process.platform === 'win32');
}

async function readSmall(path: string): Promise<string | undefined> {
  const bytes = await readFile(path).catch(() => undefined);
  return bytes && bytes.length <= MAX_LOCK_BYTES ? bytes.toString('utf8') : undefined;
}

/** The owner file, strictly: anything else is a malformed (stale) lock. */
function parseOwner(text: string | undefined): LockOwner | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (!Number.isSafeInteger(v.pid) || (v.pid as number) <= 0) return undefined;
  if (typeof v.since !== 'string' || !ISO_TIME.test(v.since)) return undefined;
  if (typeof v.what !== 'string') return undefined;
  if (v.startTime !== undefined && (typeof v.startTime !== 'string' || !/^\d{1,20}$/.test(v.startTime))) return undefined;
  if (v.bootId !== undefined && (typeof v.bootId !== 'string' || !BOOT_ID.test(v.bootId))) return undefined;
  return {
    pid: v.pid as number, since: v.since, what: v.what,
    ...(v.startTime !== undefined ? { startTime: v.startTime as string } : {}),
    ...(v.bootId !== undefined ? { bootId: v.bootId as string } : {}),
  };
}

function parseLegacyLock(text: string | undefined): { pid: number; what: string } | undefined {
  const match = text === undefined ? null : /^([1-9]\d{0,9})\n([^\n]*)\n?$/.exec(text);
  return match ? { pid: Number(match[1]), what: match[2] as string } : undefined;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const BOOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Field 22 (`starttime`) of a /proc/<pid>/stat line. Field 2 (`comm`) is the program name in
 * parentheses and may itself hold spaces and parentheses, so fields are counted after the LAST
 * `)`: the text after it starts with field 3.
 */
export function parseProcStatStartTime(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const value = stat.slice(close + 1).trim().split(/\s+/)[22 - 3];
  return value !== undefined && /^\d{1,20}$/.test(value) ? value : undefined;
}

/** Start time of a process from /proc; undefined when /proc has no readable entry for it. */
export async function startTimeOf(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat === undefined ? undefined : parseProcStatStartTime(stat);
}

let selfPromise: Promise<ProcessIdentity> | undefined;

function selfIdentity(): Promise<ProcessIdentity> {
  selfPromise ??= (async () => {
    const startTime = await startTimeOf(process.pid);
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
    return { ...(startTime !== undefined ? { startTime } : {}), ...(BOOT_ID.test(bootId) ? { bootId } : {}) };
  })();
  return selfPromise;
}

/** Wall-clock start of a process (boot time + starttime), for locks written by earlier versions. */
async function startedAtMs(pid: number): Promise<number | undefined> {
  const [startTime, procStat] = await Promise.all([startTimeOf(pid), readFile('/proc/stat', 'utf8').catch(() => '')]);
  const btime = /^btime (\d+)$/m.exec(procStat)?.[1];
  if (startTime === undefined || btime === undefined) return undefined;
  return Number(btime) * 1000 + (Number(startTime) * 1000) / USER_HZ;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** One line of printable text, bounded: the holder's description comes from a file. */
function printable(text: string): string {
  const line = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
