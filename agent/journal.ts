import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readBoundedFile, readBoundedFileIfExists } from '../common/bounded-read.js';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { LIMITS } from '../common/limits.js';

/**
 * The crash-safe record of the renewal in progress. Written (atomically) BEFORE each step runs,
 * so after a kill -9 the agent knows the last step it may have started and either finishes or
 * rolls back. One renewal at a time: the journal holds at most one.
 */
export type InstallStep = 'lint' | 'backup' | 'stop' | 'import' | 'mutual-auth' | 'verify-keystore' | 'start' | 'verify-health' | 'restore' | 'done';

export interface RenewalJournal {
  renewalId: string;
  phase: 'prepared' | 'installing';
  /** 'install' renews a mutual-auth MID; 'enable-mutual' also runs `-m` to convert a basic-auth MID. */
  mode: 'install' | 'enable-mutual';
  step?: InstallStep;
  preparedAt: string;
  updatedAt: string;
  /** SHA-256 of the new leaf once a certificate was handed in. */
  expectedSha256?: string;
  previousSha256?: string;
  /** Keystore backup taken by this renewal (absolute path). */
  backupPath?: string;
  /** config.xml backup, for the mutual-auth conversion. */
  configBackupPath?: string;
}

export interface LastResult {
  ok: boolean;
  renewalId: string;
  failedStep: string;
  error?: { code: string; message: string; detail: string };
  rolledBack: boolean;
  previousSha256: string;
  currentSha256: string;
  finishedAt: string;
  /** What the operator must act on although the operation succeeded (e.g. rotate the password after a basic-auth revert). */
  warnings?: string[];
}

/** How many finished renewals the agent remembers by id (GetRenewal answers from them). */
export const HISTORY_LIMIT = 50;

/** What GetRenewal answers: where one renewal stands on this host. */
export interface RenewalStatus {
  renewalId: string;
  state: 'unknown' | 'prepared' | 'installing' | 'installed' | 'rolled-back' | 'failed';
  /** The step in progress (installing) or last journaled. */
  step: string;
  leafSha256: string;
  previousSha256: string;
  failedStep: string;
  errorCode: string;
  message: string;
  finishedAt: string;
}

export class Journal {
  constructor(readonly stateDir: string) {}

  get renewalsDir(): string {
    return join(this.stateDir, 'renewals');
  }

  /** Per-renewal folder for the key, CSR and bundle (0700: the key lives here until installed). */
  async renewalDir(renewalId: string): Promise<string> {
    const dir = join(this.renewalsDir, renewalId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /**
   * A key, CSR or bundle in a renewal's folder, through the bounded reader (a regular file within
   * LIMITS.pemBytes; STATE_DIR_UNUSABLE when it is missing or not a regular file).
   */
  async readRenewalFile(renewalId: string, name: 'key.pem' | 'csr.pem' | 'bundle.pem'): Promise<Buffer> {
    return readBoundedFile(join(this.renewalsDir, renewalId, name), { what: `the renewal's ${name}`, maxBytes: LIMITS.pemBytes, unreadableCode: 'STATE_DIR_UNUSABLE' });
  }

  async load(): Promise<RenewalJournal | undefined> {
    return readJson<RenewalJournal>(join(this.stateDir, 'journal.json'));
  }

  async save(entry: RenewalJournal): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.stateDir, 'journal.json'), JSON.stringify({ ...entry, updatedAt: new Date().toISOString() }, null, 2), { mode: 0o600 });
  }

  async clear(renewalId: string): Promise<void> {
    await rm(join(this.stateDir, 'journal.json'), { force: true });
    await this.removeRenewalFiles(renewalId);
  }

  /** The renewal's key, CSR and bundle only; the journal entry (maybe another renewal's) stays. */
  async removeRenewalFiles(renewalId: string): Promise<void> {
    await rm(join(this.renewalsDir, renewalId), { recursive: true, force: true });
  }

  async loadLastResult(): Promise<LastResult | undefined> {
    return readJson<LastResult>(join(this.stateDir, 'last-result.json'));
  }

  /**
   * Records an outcome: `last-result.json` (what GetStatus shows) and the bounded history
   * `history.json` (the last HISTORY_LIMIT outcomes, one per renewal id, oldest first), each
   * replaced atomically. Callers hold the state lock, so the read-modify-write cannot interleave.
   * A damaged history is started afresh rather than keeping an outcome from being recorded.
   */
  async saveLastResult(full: LastResult): Promise<void> {
    const result = capResultDetail(full); // 50 × a 2 MiB script output would near LIMITS.journalBytes
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.stateDir, 'last-result.json'), JSON.stringify(result, null, 2), { mode: 0o600 });
    const previous = await this.loadHistory().catch((): LastResult[] => []);
    const history = [...previous.filter((r) => r.renewalId !== result.renewalId), result].slice(-HISTORY_LIMIT);
    await writeFileAtomic(join(this.stateDir, 'history.json'), JSON.stringify(history, null, 2), { mode: 0o600 });
  }

  /** Finished outcomes, oldest first; empty before the first one (or on a state dir from before the history). */
  async loadHistory(): Promise<LastResult[]> {
    const history = await readJson<unknown>(join(this.stateDir, 'history.json'));
    return Array.isArray(history) ? (history as LastResult[]).filter((r) => typeof r?.renewalId === 'string') : [];
  }

  /** The outcome of one renewal, if it is still remembered. */
  async findResult(renewalId: string): Promise<LastResult | undefined> {
    const found = (await this.loadHistory()).find((r) => r.renewalId === renewalId);
    if (found) return found;
    const last = await this.loadLastResult(); // a state dir written before history.json existed
    return last?.renewalId === renewalId ? last : undefined;
  }

  /**
   * Where a renewal stands, from the journal entry (in progress) and the history (finished).
   * Read-only: takes no lock. `installingNow` says whether this process is running an install,
   * which tells a live install from an entry kept after a failed restore.
   */
  async renewalStatus(renewalId: string, installingNow: boolean): Promise<RenewalStatus> {
    const [entry, result] = await Promise.all([this.load(), this.findResult(renewalId)]);
    const base: RenewalStatus = {
      renewalId, state: 'unknown', step: '', leafSha256: '', previousSha256: '', failedStep: '', errorCode: '', message: '', finishedAt: '',
    };
    const fromResult = (state: RenewalStatus['state'], r: LastResult): RenewalStatus => ({
      ...base, state, leafSha256: r.currentSha256, previousSha256: r.previousSha256, failedStep: r.failedStep,
      errorCode: r.error?.code ?? '', message: r.error?.message ?? (r.ok ? 'installed and verified' : ''), finishedAt: r.finishedAt,
    });
    // A final outcome is written before the journal entry is cleared: it wins over the entry.
    if (result?.ok) return fromResult('installed', result);
    if (result?.rolledBack) return fromResult('rolled-back', result);
    if (entry?.renewalId === renewalId) {
      if (entry.phase === 'prepared') {
        // Not started, or an attempt that stopped before changing the host (lint, backup): say why.
        return { ...(result ? fromResult('prepared', result) : base), state: 'prepared', step: entry.step ?? '', previousSha256: entry.previousSha256 ?? '', finishedAt: '' };
      }
      if (result && !installingNow) return { ...fromResult('failed', result), step: entry.step ?? '' }; // restore failed; retried at the next start
      return { ...base, state: 'installing', step: entry.step ?? '', previousSha256: entry.previousSha256 ?? '' };
    }
    if (result) return fromResult('failed', result);
    return { ...base, errorCode: 'RENEWAL_NOT_FOUND', message: `no record of renewal ${renewalId} on this agent (never prepared here, superseded, or older than the last ${HISTORY_LIMIT} outcomes)` };
  }
}

/**
 * A JSON file of the state dir through the bounded reader: undefined when it does not exist,
 * STATE_DIR_UNUSABLE when it is not a regular file (a FIFO, a device) or is not JSON, and
 * INPUT_TOO_LARGE past LIMITS.journalBytes. The parser's message is not shown (it quotes the file).
 */
async function readJson<T>(path: string): Promise<T | undefined> {
  const bytes = await readBoundedFileIfExists(path, { what: 'the agent state file', maxBytes: LIMITS.journalBytes, unreadableCode: 'STATE_DIR_UNUSABLE' });
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new MidcertError('STATE_DIR_UNUSABLE', `the agent state file ${path} is damaged: it is not JSON`, { cause: err });
  }
}

/** The most of an error's `detail` (script output) kept in last-result.json and each history entry. */
export const RESULT_DETAIL_MAX_CHARS = 8 * 1024;

/**
 * Caps `error.detail` at RESULT_DETAIL_MAX_CHARS, keeping its head and tail (the script's own
 * error is usually at the end), so history.json (HISTORY_LIMIT entries) stays far below
 * LIMITS.journalBytes.
 */
export function capResultDetail(result: LastResult): LastResult {
  const detail = result.error?.detail ?? '';
  if (!result.error || detail.length <= RESULT_DETAIL_MAX_CHARS) return result;
  const half = RESULT_DETAIL_MAX_CHARS / 2 - 64;
  const cut = `${detail.slice(0, half)}\n… [${detail.length - 2 * half} characters cut] …\n${detail.slice(-half)}`;
  return { ...result, error: { ...result.error, detail: cut } };
}
