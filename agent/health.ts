import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { openRegularFile } from '../common/bounded-read.js';
import { MidcertError, type ErrorCode } from '../common/errors.js';
import type { ServiceManager } from './service-manager.js';

/**
 * The health check after a MID restart: the service is active and the MID's logs stay free of the
 * vendor's failure messages for the settle time.
 *
 * Files (docs/vendor-facts.md §8): `agent/logs/agent0.log.0` and `agent/logs/wrapper.log` ("Only
 * agent0.log.0 and wrapper.log entries appear. These logs are also accessible in the
 * ~\agent\logs\ file path." — SND:servicenow-platform/mid-server/ecc-queue-mid-server.md), and
 * `wrapper.txt` when present (SND:…/r_MIDServerTroubleshooting.md names `~\agent\logs\wrapper.txt`).
 *
 * Line formats: both the old one, `03/28/19 10:27:09 (774) StartupSequencer SEVERE *** ERROR *** …`
 * (KB0745466), and Tokyo+, `2022-10-21T13:08:58.330+0200 SEVERE (Thread) [Class:123] …`
 * (SND:…/mid_file_cleaner.md, KB1216223). Patterns match message text anywhere in a line, so a
 * wrapper.log prefix (`INFO | jvm 1 | … | `) does not hide them.
 */
export interface LogPattern {
  code: ErrorCode;
  pattern: RegExp;
  /** The sentence the error starts with; the offending line follows it. */
  sentence: string;
}

/** In priority order: when several lines match, the error names the first pattern any line matches. */
export const HEALTH_LOG_PATTERNS: readonly LogPattern[] = [
  {
    // KB0535234: "SEVERE *** ERROR *** MID Server encryption keys do not match and are no longer valid."
    // and "An error occurred while decrypting credentials from instance … No key pair found for
    // DefaultSecurityKeyPairHandle"; KB0745466 the latter alone; KB1048088 for mTLS MIDs.
    code: 'MID_KEYS_MISMATCH',
    pattern: /encryption keys do not match|No key pair found for DefaultSecurityKeyPairHandle|An error occurred while decrypting credentials from instance/i,
    sentence: "the MID's key pair no longer matches the public key the instance holds; credentials sent by the instance cannot be decrypted "
      + '(KB0535234, KB1048088: a mutual-auth MID cannot be re-keyed or re-validated from the instance, and deleting agent_keystore would delete its certificate; midcert does not auto-fix this)',
  },
  {
    // SND:…/mid-server-connectivity-issues.md: "User cannot be authenticated or is missing the proper roles."
    // KB1048088: 401 "User Not Authenticated".
    code: 'MID_AUTH_FAILED',
    pattern: /User cannot be authenticated or is missing the proper roles|User Not Authenticated|401 Unauthorized/i,
    sentence: 'the instance refused the MID (authentication failed or the user lacks the mid_server role)',
  },
  {
    // No exact handshake text is documented (vendor-facts §8, KB3029494 "TLS handshake / client hello
    // issues"): the JSSE exception names and TLS alerts a refused client certificate produces.
    code: 'MID_HANDSHAKE_FAILED',
    pattern: /SSLHandshakeException|PKIX path building failed|bad_certificate|certificate_required|certificate_unknown|unknown_ca/,
    sentence: 'the TLS handshake between the MID and the instance failed (the instance does not accept the client certificate, or the MID does not trust the instance)',
  },
  {
    // SND:…/install-mid-mutual-auth.md: "- main SEVERE *** ERROR *** Could not find valid private key".
    code: 'MID_KEY_INVALID',
    pattern: /Could not find valid private key/i,
    sentence: 'the MID cannot use the imported private key (it needs an unencrypted PKCS#8 RSA key)',
  },
  {
    // Old format "SEVERE *** ERROR ***" (KB0745466, KB0535234); Tokyo+ "SEVERE (Thread) [Class:n]" / "ERROR (".
    code: 'MID_LOG_SEVERE',
    pattern: /SEVERE \*\*\* ERROR \*\*\*|\b(?:SEVERE|ERROR) \([^)\n]*\) \[/,
    sentence: 'the MID logged a severe error after the restart',
  },
];

const MAX_LOG_READ = 4 * 1024 * 1024;

/** The MID log files the health check watches: the configured agent log, and wrapper.log / wrapper.txt next to it. */
export function healthLogFiles(logPath: string): string[] {
  const dir = dirname(logPath);
  return [...new Set([logPath, join(dir, 'wrapper.log'), join(dir, 'wrapper.txt')])];
}

/** Where one log ended when the mark was taken (size and identity; a file missing then has offset 0). */
export interface LogMark {
  path: string;
  offset: number;
  dev?: number;
  ino?: number;
}

/** Marks every watched log before a restart, so only lines written after it count. */
export async function markLogs(logPath: string): Promise<LogMark[]> {
  return Promise.all(healthLogFiles(logPath).map(async (path) => {
    const info = await stat(path).catch(() => undefined);
    return info?.isFile() ? { path, offset: info.size, dev: info.dev, ino: info.ino } : { path, offset: 0 };
  }));
}

/** Where the log ends now, so a check reads only what the MID writes after this point. */
export async function logOffset(path: string): Promise<number> {
  return stat(path).then((s) => s.size, () => 0);
}

/** What the MID logged after `offset` (at most 4 MiB); '' when the log is missing or not a regular file (a FIFO cannot block this). */
export async function readLogSince(path: string, offset: number): Promise<string> {
  return (await readFrom(path, offset, undefined)).text;
}

async function readFrom(path: string, offset: number, mark: LogMark | undefined): Promise<{ text: string; rotated: boolean }> {
  const handle = await openRegularFile(path, { what: 'the MID log' }).catch(() => undefined);
  if (!handle) return { text: '', rotated: false };
  try {
    const info = await handle.stat();
    // Another file now (rotated: renamed away, a new one started) or truncated in place: read it from the start.
    const rotated = mark?.ino !== undefined && (info.ino !== mark.ino || info.dev !== mark.dev);
    const from = rotated || info.size < offset ? 0 : offset;
    const length = Math.max(0, Math.min(info.size - from, MAX_LOG_READ));
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, from);
    return { text: buffer.subarray(0, bytesRead).toString('utf8'), rotated };
  } finally {
    await handle.close();
  }
}

/**
 * Everything written to the watched logs since the marks. A log that rotated after the mark is
 * read from the start, and the rest of its old file (found by its inode among the siblings, e.g.
 * agent0.log.1 or wrapper.log.1) from the mark on.
 */
export async function readLogsSince(marks: readonly LogMark[]): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for (const mark of marks) {
    const now = await readFrom(mark.path, mark.offset, mark);
    if (now.rotated) {
      const old = await findByInode(mark);
      if (old) out.push({ path: old, text: (await readFrom(old, mark.offset, undefined)).text });
    }
    out.push({ path: mark.path, text: now.text });
  }
  return out;
}

async function findByInode(mark: LogMark): Promise<string | undefined> {
  const dir = dirname(mark.path);
  const stem = basename(mark.path).split('.')[0] ?? '';
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(stem)).slice(0, 200)) {
    const path = join(dir, name);
    if (path === mark.path) continue;
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile() && info.ino === mark.ino && info.dev === mark.dev) return path;
  }
  return undefined;
}

export interface UnhealthyLine {
  code: ErrorCode;
  sentence: string;
  line: string;
  path?: string;
}

/** The most telling failure among the lines (pattern priority first, then file order), or undefined. */
export function findUnhealthy(texts: readonly { path?: string; text: string }[]): UnhealthyLine | undefined {
  let best: { rank: number; hit: UnhealthyLine } | undefined;
  for (const { path, text } of texts) {
    for (const raw of text.split('\n')) {
      const rank = HEALTH_LOG_PATTERNS.findIndex((p) => p.pattern.test(raw));
      if (rank < 0 || (best && best.rank <= rank)) continue;
      const p = HEALTH_LOG_PATTERNS[rank] as LogPattern;
      best = { rank, hit: { code: p.code, sentence: p.sentence, line: raw.trim(), ...(path ? { path } : {}) } };
    }
  }
  return best?.hit;
}

export interface HealthOptions {
  /** The configured agent log; wrapper.log / wrapper.txt next to it are watched too. */
  logPath: string;
  /** Marks taken with markLogs() before the restart. Without them, `logOffset` applies to logPath only. */
  logMarks?: readonly LogMark[];
  logOffset?: number;
  startTimeoutMs: number;
  settleMs: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * The MID counts as healthy when its service is active and its logs stay free of the vendor's
 * failure messages for the settle time. Throws the code of the message found (MID_KEYS_MISMATCH,
 * MID_AUTH_FAILED, MID_HANDSHAKE_FAILED, MID_KEY_INVALID, MID_LOG_SEVERE) with the offending line,
 * or HEALTH_CHECK_FAILED when the service does not come up or stops.
 */
export async function verifyMidHealthy(service: ServiceManager, options: HealthOptions): Promise<void> {
  const poll = options.pollMs ?? 250;
  const marks = options.logMarks ?? [{ path: options.logPath, offset: options.logOffset ?? 0 }];
  const activeBy = Date.now() + options.startTimeoutMs;
  while (!(await service.isActive())) {
    if (Date.now() > activeBy) throw new MidcertError('HEALTH_CHECK_FAILED', `the MID service ${service.unit} did not become active within ${Math.round(options.startTimeoutMs / 1000)} s`);
    await sleep(poll, options.signal);
  }
  const settleUntil = Date.now() + options.settleMs;
  for (;;) {
    const bad = findUnhealthy(await readLogsSince(marks));
    if (bad) throw new MidcertError(bad.code, `${bad.sentence}: ${bad.path ? `${basename(bad.path)} reports: ` : ''}${bad.line.slice(0, 300)}`);
    if (!(await service.isActive())) throw new MidcertError('HEALTH_CHECK_FAILED', `the MID service ${service.unit} stopped after starting`);
    if (Date.now() >= settleUntil) return;
    await sleep(Math.min(poll, Math.max(0, settleUntil - Date.now())), options.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new MidcertError('INTERNAL', 'cancelled'));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new MidcertError('INTERNAL', 'cancelled')); }, { once: true });
  });
}
