import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { restoreFileAtomic, writeFileAtomic } from '../../common/fs.js';
import { buildBundle } from '../../pki/bundle.js';
import { readCertificates } from '../../pki/certificate.js';
import { readPrivateKey } from '../../pki/keys.js';
import { keyTypeLabel } from '../../pki/lint.js';
import type { Finding } from '../../pki/lint-codes.js';
import { markLogs, verifyMidHealthy } from '../health.js';
import { readConfigXmlBytes } from '../mid-config.js';
import type { InstallStep, LastResult, RenewalJournal } from '../journal.js';
import type { HostEffects, ProgressListener } from './effects.js';
import { currentLeafSha256, verifyKeystoreHolds } from './verify-keystore.js';

export interface InstallInput {
  certificatePem: string;
  chainPem: string;
  /**
   * Key types the caller allows besides RSA 2048 for this install (`midcert-agent install
   * --allow-key-type`, later InstallCertificateRequest.allow_key_types), on top of the agent config's
   * install.allowKeyTypes.
   */
  allowKeyTypes?: readonly string[];
}

/**
 * Refuses a bundle whose lint says KEY_TYPE_UNVERIFIED unless its key type is allowed: the vendor
 * documents RSA 2048 only (docs/vendor-facts.md §4). Never silent: the error names the type and
 * both ways to allow it.
 */
export function assertKeyTypeAllowed(findings: readonly Finding[], keyType: string | undefined, allowed: readonly string[]): void {
  if (!findings.some((f) => f.code === 'KEY_TYPE_UNVERIFIED') || !keyType) return;
  if (allowed.some((a) => a.toLowerCase() === keyType)) return;
  throw new MidcertError('KEY_TYPE_REFUSED',
    `the bundle key is ${keyType}, which ServiceNow does not document for MID mutual authentication (only RSA 2048; docs/vendor-facts.md §4); `
    + `to install it anyway set install.allowKeyTypes: ["${keyType}"] in the agent config, or pass --allow-key-type ${keyType} (midcert-agent install; midcert rotate)`);
}

/** What a step needs to know across a crash; kept in the journal entry. */
interface Run {
  effects: HostEffects;
  entry: RenewalJournal;
  progress: ProgressListener;
}

/**
 * The install, as named steps of one state machine (certbot's checkpoint pattern): each step is
 * journaled before it runs; any failure after the backup takes the single way out, restore().
 */
export async function runInstall(effects: HostEffects, prepared: RenewalJournal, input: InstallInput, progress: ProgressListener): Promise<LastResult> {
  const run: Run = { effects, entry: { ...prepared }, progress };
  const previousSha256 = await currentLeafSha256(effects.paths.keystore, effects.storepass, effects.alias);
  run.entry.previousSha256 = previousSha256;
  let bundlePath: string;
  let expectedChain: string[];
  try {
    ({ bundlePath, expectedChain } = await step(run, 'lint', () => assembleBundleFile(run, input)));
  } catch (err) {
    run.entry.phase = 'prepared'; // nothing on the host changed; a corrected retry may follow
    await effects.journal.save(run.entry);
    return failure(run, 'lint', err, false);
  }
  run.entry.expectedSha256 = expectedChain[0];
  try {
    await step(run, 'backup', () => takeBackups(run));
  } catch (err) {
    await rm(bundlePath, { force: true });
    run.entry.phase = 'prepared';
    await effects.journal.save(run.entry);
    return failure(run, 'backup', err, false);
  }
  try {
    await step(run, 'stop', () => effects.service.stop());
    await step(run, 'import', () => effects.script.importBundle(effects.alias, bundlePath).finally(() => rm(bundlePath, { force: true })));
    if (run.entry.mode === 'enable-mutual') await step(run, 'mutual-auth', () => effects.script.enableMutualAuth());
    await step(run, 'verify-keystore', () => verifyKeystoreHolds(effects.paths.keystore, effects.storepass, effects.alias, expectedChain));
    await startAndVerify(run);
  } catch (err) {
    return restoreAfter(run, run.entry.step ?? 'import', err);
  }
  return success(run);
}

/** After a crash: finish when the new certificate is in place and was being started, else roll back. */
export async function resumeInstall(effects: HostEffects, entry: RenewalJournal, progress: ProgressListener): Promise<LastResult> {
  const run: Run = { effects, entry: { ...entry }, progress };
  const crashedAt: InstallStep = entry.step ?? 'lint';
  if (crashedAt === 'lint' || (crashedAt === 'backup' && !entry.backupPath)) {
    run.entry.phase = 'prepared';
    await effects.journal.save(run.entry);
    return failure(run, crashedAt, new MidcertError('INTERNAL', `the agent stopped during ${crashedAt}; nothing was changed`), false);
  }
  const inPlace = entry.expectedSha256 !== undefined && (await currentLeafSha256(effects.paths.keystore, effects.storepass, effects.alias)) === entry.expectedSha256;
  if (inPlace && (crashedAt === 'start' || crashedAt === 'verify-health')) {
    try {
      await startAndVerify(run);
      return success(run);
    } catch (err) {
      return restoreAfter(run, run.entry.step ?? crashedAt, err);
    }
  }
  return restoreAfter(run, crashedAt, new MidcertError('INTERNAL', `the agent stopped during ${crashedAt}; rolled back`));
}

async function step<T>(run: Run, name: InstallStep, action: () => Promise<T>): Promise<T> {
  run.entry.step = name;
  run.entry.phase = 'installing';
  await run.effects.journal.save(run.entry);
  run.progress({ step: name, state: 'started', message: '' });
  try {
    const result = await action();
    run.progress({ step: name, state: 'done', message: '' });
    return result;
  } catch (err) {
    run.progress({ step: name, state: 'failed', message: isMidcertError(err) ? err.message : 'internal error' });
    throw err;
  }
}

async function assembleBundleFile(run: Run, input: InstallInput): Promise<{ bundlePath: string; expectedChain: string[] }> {
  const dir = await run.effects.journal.renewalDir(run.entry.renewalId);
  const key = readPrivateKey(await run.effects.journal.readRenewalFile(run.entry.renewalId, 'key.pem')).key;
  const certs = [...readCertificates(Buffer.from(input.certificatePem)), ...(input.chainPem ? readCertificates(Buffer.from(input.chainPem)) : [])];
  const built = buildBundle(certs, key);
  assertKeyTypeAllowed(built.report.findings, keyTypeLabel(key), [...(run.effects.allowKeyTypes ?? []), ...(input.allowKeyTypes ?? [])]);
  const bundlePath = join(dir, 'bundle.pem');
  await writeFileAtomic(bundlePath, built.pem, { mode: 0o600 });
  return { bundlePath, expectedChain: built.chain.map((c) => c.sha256) };
}

async function takeBackups(run: Run): Promise<void> {
  run.entry.backupPath = await run.effects.backups.take(run.effects.paths.keystore);
  if (run.entry.mode === 'enable-mutual') {
    const copy = join(await run.effects.journal.renewalDir(run.entry.renewalId), 'config.xml.bak');
    // Bounded (a regular file of at most LIMITS.configXmlBytes), written atomically, 0600: it may hold credentials.
    await writeFileAtomic(copy, await readConfigXmlBytes(run.effects.paths.configXml), { mode: 0o600 });
    run.entry.configBackupPath = copy;
  }
  await run.effects.journal.save(run.entry);
}

async function startAndVerify(run: Run): Promise<void> {
  const { effects } = run;
  const marks = await markLogs(effects.paths.log); // only lines written after the restart count, in every watched log
  await step(run, 'start', () => effects.service.start());
  await step(run, 'verify-health', () => verifyMidHealthy(effects.service, { logPath: effects.paths.log, logMarks: marks, startTimeoutMs: effects.verify.startTimeoutMs, settleMs: effects.verify.settleMs }));
}

/** The single failure path once the host was touched: old keystore (and config.xml) back, MID started. */
async function restoreAfter(run: Run, failedStep: InstallStep, cause: unknown): Promise<LastResult> {
  const { effects, entry } = run;
  try {
    await step(run, 'restore', async () => {
      await effects.service.stop().catch(() => undefined); // it may not be running
      if (!entry.backupPath) throw new MidcertError('BACKUP_MISSING', 'no backup was recorded for this renewal');
      await effects.backups.restore(entry.backupPath, effects.paths.keystore);
      if (entry.configBackupPath) await restoreFileAtomic(effects.paths.configXml, await readConfigXmlBytes(entry.configBackupPath));
      await effects.service.start();
    });
  } catch (restoreErr) {
    // Keep the journal (step "restore"): the next start of the agent tries the restore again
    // instead of forgetting that the keystore may be half-imported.
    const message = `${describe(cause)}; restoring the backup also failed: ${describe(restoreErr)}`;
    const result = toResult(run, { ok: false, failedStep, error: new MidcertError('ROLLBACK_FAILED', message), rolledBack: false },
      await currentLeafSha256(effects.paths.keystore, effects.storepass, effects.alias));
    await effects.journal.saveLastResult(result);
    return result;
  }
  return finish(run, { ok: false, failedStep, error: cause, rolledBack: true });
}

async function success(run: Run): Promise<LastResult> {
  run.progress({ step: 'done', state: 'done', message: 'installed and verified' });
  return finish(run, { ok: true, failedStep: '', error: undefined, rolledBack: false });
}

async function failure(run: Run, failedStep: InstallStep, cause: unknown, rolledBack: boolean): Promise<LastResult> {
  const result = toResult(run, { ok: false, failedStep, error: cause, rolledBack }, '');
  await run.effects.journal.saveLastResult(result);
  return result;
}

async function finish(run: Run, outcome: { ok: boolean; failedStep: string; error: unknown; rolledBack: boolean }): Promise<LastResult> {
  const current = await currentLeafSha256(run.effects.paths.keystore, run.effects.storepass, run.effects.alias);
  const result = toResult(run, outcome, current);
  await run.effects.journal.saveLastResult(result);
  await run.effects.journal.clear(run.entry.renewalId); // the key is in the keystore, or discarded
  return result;
}

function toResult(run: Run, outcome: { ok: boolean; failedStep: string; error: unknown; rolledBack: boolean }, currentSha256: string): LastResult {
  const err = outcome.error === undefined ? undefined : isMidcertError(outcome.error) ? outcome.error : new MidcertError('INTERNAL', describe(outcome.error));
  return {
    ok: outcome.ok,
    renewalId: run.entry.renewalId,
    failedStep: outcome.failedStep,
    ...(err ? { error: { code: err.code, message: err.message, detail: err.detail ?? '' } } : {}),
    rolledBack: outcome.rolledBack,
    previousSha256: run.entry.previousSha256 ?? '',
    currentSha256,
    finishedAt: new Date().toISOString(),
  };
}

function describe(err: unknown): string {
  return isMidcertError(err) ? `[${err.code}] ${err.message}` : err instanceof Error ? err.message : String(err);
}
