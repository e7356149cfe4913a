import { MidcertError } from '../../common/errors.js';
import { restoreFileAtomic } from '../../common/fs.js';
import { readFile } from 'node:fs/promises';
import { logOffset, verifyMidHealthy } from '../health.js';
import { acquireStateLock } from '../state-lock.js';
import type { LastResult, RenewalJournal } from '../journal.js';
import type { HostEffects, ProgressListener } from './effects.js';
import { runInstall, resumeInstall, type InstallInput } from './install.js';
import { assertRenewalId, prepareKeyAndCsr, readPrepared, stageBundleKey, type PreparedRenewal } from './prepare.js';
import { currentLeafSha256 } from './verify-keystore.js';

export type RenewalState = 'idle' | 'prepared' | 'installing' | 'rolling-back' | 'restarting';

export interface PrepareOptions {
  renewalId: string;
  subject: string;
  sans: string[];
  keyType: string;
  keyBits?: number;
}

/**
 * The host side of the lifecycle. One operation at a time (a second concurrent one gets
 * RENEWAL_BUSY); PrepareRenewal and InstallCertificate are idempotent by renewal id.
 */
export class RenewalEngine {
  private busy: RenewalState | undefined;

  constructor(private readonly effects: HostEffects) {}

  async state(): Promise<{ state: RenewalState; renewalId: string; lastResult: LastResult | undefined }> {
    const entry = await this.effects.journal.load();
    return {
      state: this.busy ?? (entry ? (entry.phase === 'installing' ? 'installing' : 'prepared') : 'idle'),
      renewalId: entry?.renewalId ?? '',
      lastResult: await this.effects.journal.loadLastResult(),
    };
  }

  async prepare(options: PrepareOptions): Promise<PreparedRenewal> {
    assertRenewalId(options.renewalId);
    return this.exclusive('prepared', async () => {
      const entry = await this.effects.journal.load();
      if (entry?.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${entry.renewalId} is being installed`);
      if (entry?.renewalId === options.renewalId) {
        const again = await readPrepared(this.effects.journal, options.renewalId);
        if (again) return again;
      }
      if (entry) await this.effects.journal.clear(entry.renewalId); // superseded: its key is discarded
      const prepared = await prepareKeyAndCsr(this.effects.journal, options);
      const now = new Date().toISOString();
      await this.effects.journal.save({ renewalId: options.renewalId, phase: 'prepared', mode: 'install', preparedAt: now, updatedAt: now });
      return prepared;
    });
  }

  async install(renewalId: string, input: InstallInput, progress: ProgressListener, mode: RenewalJournal['mode'] = 'install'): Promise<LastResult> {
    assertRenewalId(renewalId);
    return this.exclusive('installing', async () => {
      const entry = await this.effects.journal.load();
      if (!entry || entry.renewalId !== renewalId) {
        const last = await this.effects.journal.loadLastResult();
        if (last?.renewalId === renewalId) return last; // a repeated request: same answer, nothing re-run
        throw new MidcertError('RENEWAL_NOT_PREPARED', `no prepared renewal ${renewalId}; call PrepareRenewal first`);
      }
      if (entry.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${renewalId} is already being installed`);
      return runInstall(this.effects, { ...entry, mode }, input, progress);
    });
  }

  /**
   * The host-local path (`midcert-agent install --bundle`): a bundle made elsewhere, key included,
   * goes through the same steps as InstallCertificate.
   */
  async installBundle(bundlePem: string, progress: ProgressListener): Promise<LastResult> {
    const renewalId = `manual-${new Date().toISOString().replace(/[-:.]/g, '')}`;
    return this.exclusive('installing', async () => {
      const entry = await this.effects.journal.load();
      if (entry?.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${entry.renewalId} is being installed`);
      // Lint and stage first: a bad bundle must not discard a renewal the controller prepared.
      const { certificatePem, chainPem } = await stageBundleKey(this.effects.journal, renewalId, bundlePem).catch(async (err: unknown) => {
        await this.effects.journal.removeRenewalFiles(renewalId);
        throw err;
      });
      if (entry) await this.effects.journal.clear(entry.renewalId);
      const now = new Date().toISOString();
      const prepared: RenewalJournal = { renewalId, phase: 'prepared', mode: 'install', preparedAt: now, updatedAt: now };
      await this.effects.journal.save(prepared);
      return runInstall(this.effects, prepared, { certificatePem, chainPem }, progress);
    });
  }

  /** Called at agent start: finishes or rolls back an install interrupted by a crash. */
  resume(progress: ProgressListener): Promise<LastResult | undefined> {
    return this.exclusive('installing', async () => {
      const entry = await this.effects.journal.load();
      if (!entry || entry.phase !== 'installing') return undefined;
      return resumeInstall(this.effects, entry, progress);
    });
  }

  /** Puts the newest keystore backup back (the one taken before the last install) and restarts. */
  rollback(): Promise<LastResult> {
    return this.exclusive('rolling-back', async () => {
      const entry = await this.effects.journal.load();
      if (entry?.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${entry.renewalId} is being installed`);
      const [newest] = await this.effects.backups.list();
      if (!newest) throw new MidcertError('BACKUP_MISSING', 'there is no keystore backup to roll back to');
      const previousSha256 = await this.currentSha();
      const saved = await readFile(newest); // read first: taking the next backup may prune this one
      await this.effects.backups.take(this.effects.paths.keystore); // so a rollback can be rolled back
      await this.effects.service.stop().catch(() => undefined);
      await restoreFileAtomic(this.effects.paths.keystore, saved);
      await this.restartAndVerify(false);
      return this.record({ ok: true, renewalId: 'rollback', failedStep: '', rolledBack: true, previousSha256 });
    });
  }

  /** Break-glass: `-b USER PASS`, then restart. The password is passed through, never stored. */
  async revertToBasicAuth(username: string, password: string): Promise<LastResult> {
    if (!username || !password) throw new MidcertError('USAGE', 'username and password are required');
    return this.exclusive('restarting', async () => {
      const previousSha256 = await this.currentSha();
      const backup = await readFile(this.effects.paths.configXml);
      try {
        await this.effects.service.stop();
        await this.effects.script.revertToBasicAuth(username, password);
        await this.restartAndVerify(true);
      } catch (err) {
        // The MID may be running on the reverted config: stop it, put config.xml back, start again.
        await this.effects.service.stop().catch(() => undefined);
        await restoreFileAtomic(this.effects.paths.configXml, backup);
        await this.effects.service.start().catch(() => undefined);
        throw err;
      }
      return this.record({ ok: true, renewalId: 'revert-to-basic-auth', failedStep: '', rolledBack: false, previousSha256 });
    });
  }

  restartService(): Promise<LastResult> {
    return this.exclusive('restarting', async () => {
      const previousSha256 = await this.currentSha();
      await this.effects.service.stop();
      await this.restartAndVerify(true);
      return this.record({ ok: true, renewalId: 'restart', failedStep: '', rolledBack: false, previousSha256 });
    });
  }

  private async restartAndVerify(checkLog: boolean): Promise<void> {
    const offset = await logOffset(this.effects.paths.log);
    await this.effects.service.start();
    await verifyMidHealthy(this.effects.service, {
      logPath: this.effects.paths.log, logOffset: offset,
      startTimeoutMs: this.effects.verify.startTimeoutMs, settleMs: checkLog ? this.effects.verify.settleMs : 0,
    });
  }

  private currentSha(): Promise<string> {
    return currentLeafSha256(this.effects.paths.keystore, this.effects.storepass, this.effects.alias);
  }

  private async record(partial: Omit<LastResult, 'currentSha256' | 'finishedAt'>): Promise<LastResult> {
    const result: LastResult = { ...partial, currentSha256: await this.currentSha(), finishedAt: new Date().toISOString() };
    await this.effects.journal.saveLastResult(result);
    return result;
  }

  private async exclusive<T>(state: RenewalState, work: () => Promise<T>): Promise<T> {
    if (this.busy) throw new MidcertError('RENEWAL_BUSY', `the agent is busy (${this.busy})`);
    this.busy = state;
    try {
      const release = await acquireStateLock(this.effects.journal.stateDir, state);
      try {
        return await work();
      } finally {
        await release();
      }
    } finally {
      this.busy = undefined;
    }
  }
}

