import { hostname } from 'node:os';
import { realpath } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { HostStatusSchema } from '../proto/gen/midcert/v1/agent_pb.js';

/** The `host` part of AgentStatus: what the host is, and how much room the MID install has. */
export type HostInfoInit = MessageInitShape<typeof HostStatusSchema>;

/** Host facts change slowly; status is asked for often (every controller poll, every event). */
export const HOST_INFO_TTL_MS = 60_000;
/** Each systeminformation probe gets this long; a hung `df` (stale NFS mount) must not hang status. */
const PROBE_TIMEOUT_MS = 5_000;

const cache = new Map<string, { at: number; info: Promise<HostInfoInit> }>();

/**
 * Host facts via systeminformation: OS, uptime, CPU, memory, and the filesystem holding `midHome`
 * (the mount that is the longest prefix of it). Cached per `midHome` for HOST_INFO_TTL_MS. Never
 * throws: a probe that fails or hangs leaves its fields out, the rest is still reported.
 */
export function hostInfo(midHome: string, now: () => number = Date.now): Promise<HostInfoInit> {
  const cached = cache.get(midHome);
  if (cached && now() - cached.at < HOST_INFO_TTL_MS) return cached.info;
  const info = collectHostInfo(midHome);
  cache.set(midHome, { at: now(), info });
  return info;
}

/** Forgets cached host facts (tests; after a config reload points at another MID home). */
export function clearHostInfoCache(): void {
  cache.clear();
}

/** Loaded on first use: systeminformation is large and most daemons never need host facts. */
async function loadSi(): Promise<typeof import('systeminformation')> {
  const mod = await import('systeminformation');
  return (mod as unknown as { default?: typeof import('systeminformation') }).default ?? mod;
}

async function collectHostInfo(midHome: string): Promise<HostInfoInit> {
  const si = await loadSi();
  const [os, cpu, mem, disks, home] = await Promise.all([
    probe(() => si.osInfo()),
    probe(() => si.cpu()),
    probe(() => si.mem()),
    probe(() => si.fsSize()),
    realpath(midHome).catch(() => resolve(midHome)),
  ]);
  const info: HostInfoInit = { hostname: os?.hostname || safeHostname() };
  const uptime = safeUptime(si);
  if (uptime !== undefined) info.uptimeSeconds = uptime;
  if (os) info.os = [os.distro, os.release, os.arch && `(${os.arch})`].filter(Boolean).join(' ');
  if (cpu) {
    info.cpuModel = [cpu.manufacturer, cpu.brand].filter(Boolean).join(' ');
    if (Number.isFinite(cpu.cores)) info.cpuCores = cpu.cores;
  }
  if (mem) {
    info.memoryTotalBytes = mem.total;
    info.memoryAvailableBytes = mem.available;
  }
  const disk = disks ? mountFor(disks, home) : undefined;
  if (disk) {
    info.diskMount = disk.mount;
    info.diskTotalBytes = disk.size;
    info.diskAvailableBytes = disk.available;
  }
  return info;
}

/**
 * The filesystem whose mount point is the longest path prefix of `path` (whole path components:
 * `/home` holds `/home/mid` but not `/homework`).
 */
export function mountFor<T extends { mount: string }>(filesystems: readonly T[], path: string): T | undefined {
  let best: T | undefined;
  for (const fs of filesystems) {
    if (!fs.mount || !isUnder(path, fs.mount)) continue;
    if (!best || fs.mount.length > best.mount.length) best = fs;
  }
  return best;
}

function isUnder(path: string, mount: string): boolean {
  if (path === mount) return true;
  const prefix = mount.endsWith(sep) || mount.endsWith('/') ? mount : `${mount}${sep}`;
  // Windows drive letters compare case-insensitively (C:\ vs c:\).
  return sep === '\\' ? path.toLowerCase().startsWith(prefix.toLowerCase()) : path.startsWith(prefix);
}

async function probe<T>(run: () => Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((done) => { timer = setTimeout(() => done(undefined), PROBE_TIMEOUT_MS); });
  try {
    return await Promise.race([run().catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function safeUptime(si: typeof import('systeminformation')): number | undefined {
  try {
    const uptime = si.time().uptime;
    return Number.isFinite(uptime) ? Math.floor(uptime) : undefined;
  } catch {
    return undefined;
  }
}

function safeHostname(): string {
  try {
    return hostname();
  } catch {
    return '';
  }
}
