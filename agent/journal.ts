import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/fs.js';

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

  async saveLastResult(result: LastResult): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.stateDir, 'last-result.json'), JSON.stringify(result, null, 2), { mode: 0o600 });
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
