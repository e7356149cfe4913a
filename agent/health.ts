import { stat } from 'node:fs/promises';
import { openRegularFile } from '../common/bounded-read.js';
import { MidcertError } from '../common/errors.js';
import type { ServiceManager } from './service-manager.js';

/**
 * Lines in the MID's agent log that mean the new certificate did not work. A handshake refusal
 * is what a MID shows when the instance does not trust its certificate; the key error is what
 * manage-certificates-imported non-PKCS#8 keys produce at start.
 */
export const UNHEALTHY_LOG_PATTERNS: RegExp[] = [
  /SSLHandshakeException/,
  /Could not find valid private key/,
  /bad_certificate|certificate_unknown|unknown_ca/,
  /User Not Authenticated|401 Unauthorized/,
];

const MAX_LOG_READ = 4 * 1024 * 1024;

/** Where the log ends now, so a check reads only what the MID writes after this point. */
export async function logOffset(path: string): Promise<number> {
  return stat(path).then((s) => s.size, () => 0);
}

/** What the MID logged after `offset` (at most 4 MiB); '' when the log is missing or not a regular file (a FIFO cannot block this). */
export async function readLogSince(path: string, offset: number): Promise<string> {
  const handle = await openRegularFile(path, { what: 'the MID log' }).catch(() => undefined);
  if (!handle) return '';
  try {
    const size = (await handle.stat()).size;
    const from = size < offset ? 0 : offset; // the log rotated: read the new file from the start
    const length = Math.min(size - from, MAX_LOG_READ);
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, from);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

export interface HealthOptions {
  logPath: string;
  logOffset: number;
  startTimeoutMs: number;
  settleMs: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * The MID counts as healthy when its service is active and its log stays free of certificate
 * errors for the settle time. Throws HEALTH_CHECK_FAILED with the offending log line.
 */
export async function verifyMidHealthy(service: ServiceManager, options: HealthOptions): Promise<void> {
  const poll = options.pollMs ?? 250;
  const activeBy = Date.now() + options.startTimeoutMs;
  while (!(await service.isActive())) {
    if (Date.now() > activeBy) throw new MidcertError('HEALTH_CHECK_FAILED', `the MID service ${service.unit} did not become active within ${Math.round(options.startTimeoutMs / 1000)} s`);
    await sleep(poll, options.signal);
  }
  const settleUntil = Date.now() + options.settleMs;
  for (;;) {
    const bad = firstUnhealthyLine(await readLogSince(options.logPath, options.logOffset));
    if (bad) throw new MidcertError('HEALTH_CHECK_FAILED', `the MID log reports: ${bad.slice(0, 300)}`);
    if (!(await service.isActive())) throw new MidcertError('HEALTH_CHECK_FAILED', `the MID service ${service.unit} stopped after starting`);
    if (Date.now() >= settleUntil) return;
    await sleep(Math.min(poll, Math.max(0, settleUntil - Date.now())), options.signal);
  }
}

export function firstUnhealthyLine(text: string): string | undefined {
  return text.split('\n').find((line) => UNHEALTHY_LOG_PATTERNS.some((p) => p.test(line)))?.trim();
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new MidcertError('INTERNAL', 'cancelled'));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new MidcertError('INTERNAL', 'cancelled')); }, { once: true });
  });
}
