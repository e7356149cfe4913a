import { MidcertError } from '../../common/errors.js';
import { redact } from '../../common/exec.js';
import { restoreFileAtomic } from '../../common/fs.js';
import { readConfigXmlBytes } from '../mid-config.js';
import { markLogs, verifyMidHealthy } from '../health.js';
import { acquireStateLock } from '../state-lock.js';
import { assertCredentials, BASIC_AUTH_ARGV_WARNING } from '../manage-certificates.js';
import type { LastResult, RenewalJournal, RenewalStatus } from '../journal.js';
import type { HostEffects, ProgressListener } from './effects.js';
import { runInstall, resumeInstall, type InstallInput } from './install.js';
import { assertRenewalId, prepareKeyAndCsr, readPrepared, stageBundleKey, type PreparedRenewal } from './prepare.js';
import { currentLeafSha256 } from './verify-keystore.js';

export type RenewalState = 'idle' | 'prepared' | 'installing' | 'rolling-back' | 'restarting';

/** States in which the engine is changing the MID (the daemon's shutdown grace, the busy gauge). */
export function isChangingMid(state: string): boolean {
  return state === 'installing' || state === 'rolling-back' || state === 'restarting';
}

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

  /** GetRenewal: what became of one renewal (journal + bounded history); read-only, no lock. */
  async renewalStatus(renewalId: string): Promise<RenewalStatus> {
    assertRenewalId(renewalId);
    return this.effects.journal.renewalStatus(renewalId, this.busy === 'installing');
  }

  async prepare(options: PrepareOptions): Promise<PreparedRenewal> {
    assertRenewalId(options.renewalId);
    return this.exclusive('prepared', `preparing renewal ${options.renewalId}`, async () => {
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
    return this.exclusive('installing', `installing renewal ${renewalId}`, async () => {
      const entry = await this.effects.journal.load();
      if (!entry || entry.renewalId !== renewalId) {
        const last = await this.effects.journal.findResult(renewalId);
        if (last) return last; // a repeated request: same answer, nothing re-run
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
  async installBundle(bundlePem: string, progress: ProgressListener, options: { allowKeyTypes?: readonly string[] } = {}): Promise<LastResult> {
    const renewalId = `manual-${new Date().toISOString().replace(/[-:.]/g, '')}`;
    return this.exclusive('installing', `installing bundle ${renewalId} (midcert-agent install)`, async () => {
      const entry = await this.effects.journal.load();
      if (entry?.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${entry.renewalId} is being installed`);
      // Lint, check the key type and stage first: a bad bundle must not discard a renewal the controller prepared.
      const allowKeyTypes = [...(this.effects.allowKeyTypes ?? []), ...(options.allowKeyTypes ?? [])];
      const { certificatePem, chainPem } = await stageBundleKey(this.effects.journal, renewalId, bundlePem, allowKeyTypes).catch(async (err: unknown) => {
        await this.effects.journal.removeRenewalFiles(renewalId);
        throw err;
      });
      if (entry) await this.effects.journal.clear(entry.renewalId);
      const now = new Date().toISOString();
      const prepared: RenewalJournal = { renewalId, phase: 'prepared', mode: 'install', preparedAt: now, updatedAt: now };
      await this.effects.journal.save(prepared);
      return runInstall(this.effects, prepared, { certificatePem, chainPem, allowKeyTypes: options.allowKeyTypes }, progress);
    });
  }

  /** Called at agent start: finishes or rolls back an install interrupted by a crash. */
  resume(progress: ProgressListener): Promise<LastResult | undefined> {
    return this.exclusive('installing', 'resuming an interrupted install', async () => {
      const entry = await this.effects.journal.load();
      if (!entry || entry.phase !== 'installing') return undefined;
      return resumeInstall(this.effects, entry, progress);
    });
  }

  /** Puts the newest keystore backup back (the one taken before the last install) and restarts. */
  rollback(): Promise<LastResult> {
    return this.exclusive('rolling-back', 'rolling back to the newest keystore backup', async () => {
      const entry = await this.effects.journal.load();
      if (entry?.phase === 'installing') throw new MidcertError('RENEWAL_BUSY', `renewal ${entry.renewalId} is being installed`);
      const [newest] = await this.effects.backups.list();
      if (!newest) throw new MidcertError('BACKUP_MISSING', 'there is no keystore backup to roll back to');
      const previousSha256 = await this.currentSha();
      const saved = await this.effects.backups.read(newest); // read first: taking the next backup may prune this one
      await this.effects.backups.take(this.effects.paths.keystore); // so a rollback can be rolled back
      await this.effects.service.stop().catch(() => undefined);
      await restoreFileAtomic(this.effects.paths.keystore, saved);
      await this.restartAndVerify(false);
      return this.record({ ok: true, renewalId: 'rollback', failedStep: '', rolledBack: true, previousSha256 });
    });
  }

  /**
   * Break-glass: `-b USER PASS`, then restart. The password is passed through, never stored or
   * logged. The vendor script takes it on its command line, so once the script has run, the
   * result carries BASIC_AUTH_ARGV_WARNING in `warnings` (an error after that point, in its
   * detail), and `onWarning` hears it right away (the daemon logs it).
   */
  async revertToBasicAuth(username: string, password: string, options: { onWarning?: (warning: string) => void } = {}): Promise<LastResult> {
    assertCredentials(username, password);
    return this.exclusive('restarting', 'reverting the MID to basic auth (break-glass)', async () => {
      const previousSha256 = await this.currentSha();
      const backup = await readConfigXmlBytes(this.effects.paths.configXml);
      let exposed = false;
      try {
        await this.effects.service.stop();
        exposed = true;
        try {
          await this.effects.script.revertToBasicAuth(username, password);
        } finally {
          options.onWarning?.(BASIC_AUTH_ARGV_WARNING);
        }
        await this.restartAndVerify(true);
      } catch (err) {
        // The MID may be running on the reverted config: stop it, put config.xml back, start again.
        await this.effects.service.stop().catch(() => undefined);
        try {
          await restoreFileAtomic(this.effects.paths.configXml, backup);
        } finally {
          await this.effects.service.start().catch(() => undefined);
        }
        throw revertError(err, password, exposed);
      }
      return this.record({ ok: true, renewalId: 'revert-to-basic-auth', failedStep: '', rolledBack: false, previousSha256, warnings: [BASIC_AUTH_ARGV_WARNING] });
    });
  }

  restartService(): Promise<LastResult> {
    return this.exclusive('restarting', 'restarting the MID service', async () => {
      const previousSha256 = await this.currentSha();
      await this.effects.service.stop();
      await this.restartAndVerify(true);
      return this.record({ ok: true, renewalId: 'restart', failedStep: '', rolledBack: false, previousSha256 });
    });
  }

  private async restartAndVerify(checkLog: boolean): Promise<void> {
    const marks = await markLogs(this.effects.paths.log); // agent0.log.0, wrapper.log, wrapper.txt
    await this.effects.service.start();
    await verifyMidHealthy(this.effects.service, {
      logPath: this.effects.paths.log, logMarks: marks,
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

  /** `doing` names the work in the state-dir lock, for the RENEWAL_BUSY another process gets. */
  private async exclusive<T>(state: RenewalState, doing: string, work: () => Promise<T>): Promise<T> {
    if (this.busy) throw new MidcertError('RENEWAL_BUSY', `the agent is busy (${this.busy})`);
    this.busy = state;
    try {
      const release = await acquireStateLock(this.effects.journal.stateDir, doing);
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

/** A failed revert's error: never the password (whatever a peer echoed), plus the warning once the script ran. */
function revertError(err: unknown, password: string, exposed: boolean): unknown {
  if (!(err instanceof MidcertError)) return err;
  const detail = [err.detail ? redact(err.detail, [password]) : '', exposed ? `Warning: ${BASIC_AUTH_ARGV_WARNING}.` : ''].filter(Boolean).join('\n');
  return new MidcertError(err.code, redact(err.message, [password]), detail ? { detail } : {});
}

