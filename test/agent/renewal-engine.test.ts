import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import type { HostEffects, Progress } from '../../agent/renewal/effects.js';
import { RenewalEngine } from '../../agent/renewal/engine.js';
import { readKeystore, findEntry } from '../../pki/keystore.js';
import { createLabCa } from '../../lab/lab-ca.js';
import { buildCsr } from '../../pki/csr.js';
import { generateKey, keySpecFrom, toPkcs8Pem } from '../../pki/keys.js';
import { startMidWorld, waitFor, type MidWorld } from '../helpers/mid-world.js';

async function leafSha(world: MidWorld): Promise<string> {
  const store = readKeystore(await readFile(world.host.keystorePath), 'changeit');
  return findEntry(store, 'defaultsecuritykeypairhandle')?.chain[0]?.sha256 ?? '';
}

async function heartbeatsAfter(world: MidWorld, ok: number): Promise<void> {
  await waitFor(() => world.midStatus().heartbeatsOk > ok + 1 && world.midStatus().instanceStatus === 'Up', 15_000, 'the MID is not heartbeating Up');
}

describe('agent renewal engine against a simulated MID and instance', function () {
  this.timeout(120_000);
  let world: MidWorld;

  beforeEach(async () => { world = await startMidWorld(); });
  afterEach(async () => { await world.close(); });

  async function prepareAndSign(engine: RenewalEngine, id: string, publish = true): Promise<{ certificatePem: string; chainPem: string }> {
    const prepared = await engine.prepare({ renewalId: id, subject: `CN=${world.name},O=midcert Lab`, sans: [], keyType: 'rsa' });
    const certificatePem = world.ca.signCsr(prepared.csrPem, { days: 365 });
    if (publish) await world.publishLeaf(certificatePem);
    return { certificatePem, chainPem: world.ca.chainPem };
  }

  it('installs a renewed leaf: keystore holds it, the MID heartbeats Up with it, the key is gone from disk', async () => {
    const engine = new RenewalEngine(world.effects());
    const before = await leafSha(world);
    const input = await prepareAndSign(engine, 'r1');
    const keyFile = join(world.dir, 'state', 'renewals', 'r1', 'key.pem');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const steps: Progress[] = [];
    const result = await engine.install('r1', input, (p) => steps.push(p));
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.previousSha256, before);
    assert.notEqual(result.currentSha256, before);
    assert.equal(await leafSha(world), result.currentSha256);
    assert.equal(world.midStatus().leaf?.sha256, result.currentSha256);
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
    assert.deepEqual(steps.filter((s) => s.state === 'done').map((s) => s.step), ['lint', 'backup', 'stop', 'import', 'verify-keystore', 'start', 'verify-health', 'done']);
    await assert.rejects(stat(keyFile));
    // Idempotent by renewal id: the same request answers the same result and changes nothing.
    const again = await engine.install('r1', input, () => undefined);
    assert.deepEqual(again, result);
  });

  // Issue 11 item 5 (KB0535234, KB1048088, t_RekeyAMIDServer.md): the pair also decrypts the
  // credentials the instance encrypts to the MID's public key. An instance that keeps the old key
  // after a renewal makes the MID log "encryption keys do not match": the health check catches it
  // and the MID goes back to the pair the instance knows.
  it('rolls back when the instance still holds the old public key (MID_KEYS_MISMATCH)', async () => {
    await world.close();
    world = await startMidWorld('mid01', { instance: { mtlsKeyUpdate: 'keep' } });
    const engine = new RenewalEngine(world.effects());
    const before = await leafSha(world);
    const input = await prepareAndSign(engine, 'rk');
    const result = await engine.install('rk', input, () => undefined);
    assert.equal(result.ok, false, JSON.stringify(result));
    assert.equal(result.error?.code, 'MID_KEYS_MISMATCH');
    assert.equal(result.failedStep, 'verify-health');
    assert.equal(result.rolledBack, true);
    assert.equal(await leafSha(world), before, 'the old pair is back in the keystore');
  });

  it('installs a renewal when the instance takes the new public key (the default model)', async () => {
    const engine = new RenewalEngine(world.effects());
    const result = await engine.install('ru', await prepareAndSign(engine, 'ru'), () => undefined);
    assert.equal(result.ok, true, JSON.stringify(result));
    const log = await readFile(join(world.host.home, 'agent', 'logs', 'agent0.log.0'), 'utf8');
    assert.doesNotMatch(log, /encryption keys do not match/);
  });

  it('refuses a bundle that does not lint (chain of another CA): nothing on the host changes', async () => {
    const engine = new RenewalEngine(world.effects());
    const bytes = await readFile(world.host.keystorePath);
    const input = await prepareAndSign(engine, 'r2');
    const other = await createLabCa('Other');
    const result = await engine.install('r2', { ...input, chainPem: other.chainPem }, () => undefined);
    assert.equal(result.ok, false);
    assert.equal(result.failedStep, 'lint');
    assert.equal(result.error?.code, 'BUNDLE_INVALID');
    assert.equal(result.rolledBack, false);
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
    assert.equal(world.midStatus().state, 'active');
    // Still prepared: a corrected retry with the same id goes through.
    const retry = await engine.install('r2', input, () => undefined);
    assert.equal(retry.ok, true, JSON.stringify(retry));
  });

  it('rolls back when manage-certificates exits non-zero: keystore bytes equal the backup, MID Up', async () => {
    const failing: HostEffects['script'] = {
      importBundle: async () => { throw new MidcertError('SCRIPT_FAILED', 'manage-certificates -a exited 1', { detail: 'keytool error: java.io.IOException' }); },
      enableMutualAuth: async () => ({ output: '' }),
      revertToBasicAuth: async () => ({ output: '' }),
    };
    const engine = new RenewalEngine(world.effects({ script: failing }));
    const bytes = await readFile(world.host.keystorePath);
    const input = await prepareAndSign(engine, 'r3');
    const result = await engine.install('r3', input, () => undefined);
    assert.equal(result.ok, false);
    assert.equal(result.failedStep, 'import');
    assert.equal(result.error?.code, 'SCRIPT_FAILED');
    assert.match(result.error?.detail ?? '', /keytool error/);
    assert.equal(result.rolledBack, true);
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
  });

  it('rolls back when the keystore does not verify after an import that claimed success', async () => {
    const silent: HostEffects['script'] = {
      importBundle: async () => ({ output: 'Certificate imported' }),
      enableMutualAuth: async () => ({ output: '' }),
      revertToBasicAuth: async () => ({ output: '' }),
    };
    const engine = new RenewalEngine(world.effects({ script: silent }));
    const bytes = await readFile(world.host.keystorePath);
    const result = await engine.install('r4', await prepareAndSign(engine, 'r4'), () => undefined);
    assert.equal(result.failedStep, 'verify-keystore');
    assert.equal(result.error?.code, 'KEYSTORE_VERIFY_FAILED');
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
    assert.equal(world.midStatus().state, 'active');
  });

  it('rolls back when the MID fails its handshake with the new certificate (CA the instance does not trust)', async () => {
    const engine = new RenewalEngine(world.effects());
    const bytes = await readFile(world.host.keystorePath);
    const prepared = await engine.prepare({ renewalId: 'r5', subject: 'CN=mid01', sans: [], keyType: 'rsa' });
    const rogue = await createLabCa('Rogue');
    const result = await engine.install('r5', { certificatePem: rogue.signCsr(prepared.csrPem), chainPem: rogue.chainPem }, () => undefined);
    assert.equal(result.ok, false);
    assert.equal(result.failedStep, 'verify-health');
    // The log line maps to its own code (agent/health.ts; docs/vendor-facts.md §8 handshake errors).
    assert.equal(result.error?.code, 'MID_HANDSHAKE_FAILED');
    assert.match(result.error?.message ?? '', /SSLHandshakeException/);
    assert.equal(result.rolledBack, true);
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
  });

  for (const crashAt of ['backup', 'stop', 'import', 'verify-keystore', 'start', 'verify-health'] as const) {
    it(`resumes after the agent dies at "${crashAt}": the host ends on the old or the verified new certificate, MID Up`, async () => {
      const base = world.effects();
      const bytes = await readFile(world.host.keystorePath);
      // The agent "dies" right after journaling the step: nothing after that write happens, which
      // is exactly what a kill -9 leaves on disk (every journal write precedes its step).
      const save = base.journal.save.bind(base.journal);
      base.journal.save = async (entry) => {
        await save(entry);
        if (entry.step === crashAt) await new Promise(() => undefined);
      };
      const engine = new RenewalEngine(base);
      void engine.install(`c-${crashAt}`, await prepareAndSign(engine, `c-${crashAt}`), () => undefined);
      await waitFor(async () => (await world.effects().journal.load())?.step === crashAt, 20_000, `never reached ${crashAt}`);
      const restarted = new RenewalEngine(world.effects());
      const result = await restarted.resume(() => undefined);
      assert.ok(result, 'resume found the interrupted install');
      if (result.ok) {
        assert.equal(await leafSha(world), result.currentSha256);
        assert.notEqual(result.currentSha256, result.previousSha256);
      } else {
        assert.deepEqual(await readFile(world.host.keystorePath), bytes, 'keystore bytes equal the backup');
      }
      assert.equal(await restarted.resume(() => undefined), undefined, 'nothing left to resume');
      await waitFor(() => world.midStatus().state === 'active', 10_000, 'MID not running');
      await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
    });
  }

  it('is idempotent for PrepareRenewal and refuses install without prepare', async () => {
    const engine = new RenewalEngine(world.effects());
    const a = await engine.prepare({ renewalId: 'p1', subject: 'CN=mid01', sans: [], keyType: 'rsa' });
    const b = await engine.prepare({ renewalId: 'p1', subject: 'CN=mid01', sans: [], keyType: 'rsa' });
    assert.deepEqual(a, b);
    await assert.rejects(engine.install('nope', { certificatePem: '', chainPem: '' }, () => undefined), (e: unknown) => e instanceof MidcertError && e.code === 'RENEWAL_NOT_PREPARED');
    await assert.rejects(engine.prepare({ renewalId: '../etc', subject: 'CN=x', sans: [], keyType: 'rsa' }), (e: unknown) => e instanceof MidcertError && e.code === 'USAGE');
  });

  it('converts a basic-auth MID: import, manage-certificates -m removes the credentials, the MID comes Up on mTLS', async () => {
    const { runManageCertificates } = await import('../../lab/mid/host.js');
    const basic = await runManageCertificates(world.host, ['-b', 'mid.mid01', 'Basic-Pa55word']);
    assert.equal(basic.code, 0, basic.stderr);
    assert.match(await readFile(world.host.configPath, 'utf8'), /mid\.instance\.username/);
    const engine = new RenewalEngine(world.effects());
    const steps: string[] = [];
    const result = await engine.install('conv1', await prepareAndSign(engine, 'conv1'), (p) => steps.push(`${p.step}:${p.state}`), 'enable-mutual');
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.ok(steps.includes('mutual-auth:done'), steps.join(' '));
    const config = await readFile(world.host.configPath, 'utf8');
    assert.doesNotMatch(config, /mid\.instance\.(username|password)/);
    assert.doesNotMatch(JSON.stringify(result), /Basic-Pa55word/);
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
  });

  it('break-glass revert to basic auth is undone when the MID does not come back healthy (instance requires mTLS)', async () => {
    const engine = new RenewalEngine(world.effects());
    const config = await readFile(world.host.configPath);
    await assert.rejects(engine.revertToBasicAuth('mid.mid01', 'Basic-Pa55word'), (e: unknown) => e instanceof MidcertError && e.code === 'MID_AUTH_FAILED' && !e.message.includes('Basic-Pa55word'));
    assert.deepEqual(await readFile(world.host.configPath), config, 'config.xml restored byte for byte');
    await waitFor(() => world.midStatus().state === 'active', 10_000, 'MID not running');
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
  });

  it('a bad bundle given to `install --bundle` leaves a renewal the controller prepared intact', async () => {
    const engine = new RenewalEngine(world.effects());
    const input = await prepareAndSign(engine, 'kept');
    await assert.rejects(engine.installBundle(input.certificatePem, () => undefined), (e: unknown) => e instanceof MidcertError && e.code === 'BUNDLE_INVALID');
    const result = await engine.install('kept', input, () => undefined);
    assert.equal(result.ok, true, JSON.stringify(result));
  });

  it('rolls back to the previous keystore on demand', async () => {
    const engine = new RenewalEngine(world.effects());
    const before = await leafSha(world);
    const installed = await engine.install('r9', await prepareAndSign(engine, 'r9'), () => undefined);
    assert.equal(installed.ok, true);
    const result = await engine.rollback();
    assert.equal(result.ok, true);
    assert.equal(await leafSha(world), before);
    await heartbeatsAfter(world, world.midStatus().heartbeatsOk);
  });

  // docs/vendor-facts.md §4: vendor material shows RSA 2048 only; another key type is refused unless allowed.
  it('refuses a bundle whose key is not RSA 2048 (KEY_TYPE_REFUSED naming the type, the config key and the flag); nothing on the host changes', async () => {
    const engine = new RenewalEngine(world.effects());
    const bytes = await readFile(world.host.keystorePath);
    const prepared = await engine.prepare({ renewalId: 'ec1', subject: `CN=${world.name},O=midcert Lab`, sans: [], keyType: 'ec' });
    const result = await engine.install('ec1', { certificatePem: world.ca.signCsr(prepared.csrPem, { days: 365 }), chainPem: world.ca.chainPem }, () => undefined);
    assert.equal(result.ok, false);
    assert.equal(result.failedStep, 'lint');
    assert.equal(result.error?.code, 'KEY_TYPE_REFUSED');
    assert.match(result.error?.message ?? '', /ec-p256.*install\.allowKeyTypes: \["ec-p256"\].*--allow-key-type ec-p256/);
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
    // host-local `midcert-agent install --bundle` refuses it too, before anything is staged or discarded.
    const key = await generateKey(keySpecFrom('rsa', 3072));
    const csr = buildCsr(key, { subject: `CN=${world.name},O=midcert Lab`, sans: [] });
    const bundle = world.ca.signCsr(csr, { days: 365 }) + world.ca.chainPem + toPkcs8Pem(key);
    await assert.rejects(engine.installBundle(bundle, () => undefined), (e: unknown) => e instanceof MidcertError && e.code === 'KEY_TYPE_REFUSED' && /rsa-3072/.test(e.message));
    assert.deepEqual(await readFile(world.host.keystorePath), bytes);
  });

  it('installs an RSA 3072 key when allowed: by the agent config (install.allowKeyTypes) or by the request (--allow-key-type)', async () => {
    const byConfig = new RenewalEngine(world.effects({ allowKeyTypes: ['rsa-3072'] }));
    const prepared = await byConfig.prepare({ renewalId: 'rsa3k', subject: `CN=${world.name},O=midcert Lab`, sans: [], keyType: 'rsa', keyBits: 3072 });
    const certificatePem = world.ca.signCsr(prepared.csrPem, { days: 365 });
    await world.publishLeaf(certificatePem);
    const result = await byConfig.install('rsa3k', { certificatePem, chainPem: world.ca.chainPem }, () => undefined);
    assert.equal(result.ok, true, JSON.stringify(result));
    const engine = new RenewalEngine(world.effects());
    const again = await engine.prepare({ renewalId: 'rsa3k2', subject: `CN=${world.name},O=midcert Lab`, sans: [], keyType: 'rsa', keyBits: 3072 });
    const cert2 = world.ca.signCsr(again.csrPem, { days: 365 });
    await world.publishLeaf(cert2);
    const allowed = await engine.install('rsa3k2', { certificatePem: cert2, chainPem: world.ca.chainPem, allowKeyTypes: ['RSA-3072'] }, () => undefined);
    assert.equal(allowed.ok, true, JSON.stringify(allowed));
  });

  // docs/vendor-facts.md §14: the MID keeps its own backups in agent/security_backup/ with
  // keystore_backup_audit_trail.log, pruned to mid.keystore.max_backups (3) — SND:…/mid-unified-keystore.md,
  // SND:…/r_MIDServerProperties.md. Ours live in the agent's state dir; we never write, prune or restore there.
  it('leaves a full agent/security_backup/ byte-identical through an install, a failed install and a rollback', async () => {
    // "If it is 0 or negative, no backup will be made" (r_MIDServerProperties.md): the MID's script adds none, so any change would be ours.
    const config = await readFile(world.host.configPath, 'utf8');
    await writeFile(world.host.configPath, config.replace('</parameters>', '  <parameter name="mid.keystore.max_backups" value="0"/>\n</parameters>'));
    const backups = join(world.host.agentDir, 'security_backup');
    await mkdir(backups, { recursive: true });
    const ks = await readFile(world.host.keystorePath);
    for (const stamp of ['20240101T000000Z', '20240201T000000Z', '20240301T000000Z']) await writeFile(join(backups, `agent_keystore.${stamp}`), ks, { mode: 0o600 });
    await writeFile(join(backups, 'keystore_backup_audit_trail.log'), 'agent_keystore.20240301T000000Z keypairs.mid_id=abc aliases=defaultsecuritykeypairhandle\n');
    const before = await snapshot(backups);
    const engine = new RenewalEngine(world.effects());
    assert.equal((await engine.install('sb1', await prepareAndSign(engine, 'sb1'), () => undefined)).ok, true);
    const rogue = await createLabCa('Rogue SB');
    const prepared = await engine.prepare({ renewalId: 'sb2', subject: 'CN=mid01', sans: [], keyType: 'rsa' });
    const failed = await engine.install('sb2', { certificatePem: rogue.signCsr(prepared.csrPem), chainPem: rogue.chainPem }, () => undefined);
    assert.equal(failed.rolledBack, true);
    assert.equal((await engine.rollback()).ok, true);
    assert.deepEqual(await snapshot(backups), before);
    const ours = await readdir(join(world.dir, 'state', 'backups'));
    assert.ok(ours.length > 0 && ours.every((n) => n.endsWith('.keystore')), ours.join(' '));
  });
});

/** Every file under dir: name, mode and bytes. */
async function snapshot(dir: string): Promise<Record<string, { mode: number; sha256: string }>> {
  const out: Record<string, { mode: number; sha256: string }> = {};
  for (const name of (await readdir(dir)).sort()) {
    const info = await stat(join(dir, name));
    out[name] = { mode: info.mode, sha256: createHash('sha256').update(await readFile(join(dir, name))).digest('hex') };
  }
  return out;
}
