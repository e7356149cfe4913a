import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeystoreBackups } from '../../agent/backups.js';
import { loadAgentConfig } from '../../agent/config.js';
import { readLogSince } from '../../agent/health.js';
import { Journal } from '../../agent/journal.js';
import { readConfigXmlBytes } from '../../agent/mid-config.js';
import { readPrepared } from '../../agent/renewal/prepare.js';
import { verifyKeystoreHolds } from '../../agent/renewal/verify-keystore.js';
import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readKeystore } from '../../pki/keystore.js';
import { runOk } from '../helpers/run.js';
import { releaseFifoReaders, within } from '../helpers/special-files.js';

const coded = (code: string, message: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof MidcertError, `not a MidcertError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return true;
};

/**
 * Every file the agent reads goes through the bounded reader: a FIFO, /dev/zero, a directory or
 * an oversized file in place of the keystore, a backup, a journal file, a renewal key, config.xml
 * or the agent config is refused with a coded error in well under a second, never read forever.
 */
describe('agent files that are not what they should be', function () {
  this.timeout(30_000);
  let dir: string;
  let keystore: string;
  const fifos: string[] = [];
  const file = (name: string): string => join(dir, name);
  const fifo = async (path: string): Promise<string> => { await runOk('mkfifo', [path]); fifos.push(path); return path; };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-state-files-'));
    keystore = file('agent_keystore');
    await runOk('keytool', ['-genkeypair', '-keystore', keystore, '-storetype', 'JKS', '-storepass', 'changeit', '-keypass', 'changeit',
      '-alias', 'defaultsecuritykeypairhandle', '-dname', 'CN=mid01', '-keyalg', 'EC', '-groupname', 'secp256r1', '-validity', '30']);
  });
  afterEach(() => releaseFifoReaders(fifos));
  after(() => rm(dir, { recursive: true, force: true }));

  describe('keystore backups', () => {
    it('takes and restores a real keystore byte for byte', async () => {
      const backups = new KeystoreBackups(file('backups'), 3);
      const original = await readFile(keystore);
      const saved = await backups.take(keystore);
      assert.deepEqual(await backups.read(saved), original);
      await writeFile(file('restored'), 'something else');
      await backups.restore(saved, file('restored'));
      assert.deepEqual(await readFile(file('restored')), original);
      assert.equal(readKeystore(await readFile(file('restored')), 'changeit').entries.length, 1);
    });

    it('refuses to back up a keystore that is /dev/zero, a FIFO, a directory or over the bound', async () => {
      const backups = new KeystoreBackups(file('backups-refused'), 3);
      await symlink('/dev/zero', file('ks-zero'));
      await mkdir(file('ks-dir'));
      await writeFile(file('ks-big'), Buffer.alloc(LIMITS.keystoreBytes + 1));
      const cases: [string, string, RegExp][] = [
        [file('ks-zero'), 'KEYSTORE_UNREADABLE', /is a character device, not a regular file/],
        [await fifo(file('ks-fifo')), 'KEYSTORE_UNREADABLE', /is a FIFO \(named pipe\), not a regular file/],
        [file('ks-dir'), 'KEYSTORE_UNREADABLE', /is a directory, not a regular file/],
        [file('ks-big'), 'INPUT_TOO_LARGE', /is 4194305 bytes; the limit is 4194304 bytes/],
        [file('ks-missing'), 'KEYSTORE_UNREADABLE', /ENOENT/],
      ];
      for (const [path, code, message] of cases) await assert.rejects(within(5_000, backups.take(path)), coded(code, message));
      assert.deepEqual(await backups.list(), [], 'no backup was written for any of them');
    });

    it('refuses to restore a backup that is a FIFO (ROLLBACK_FAILED) or gone (BACKUP_MISSING), leaving the keystore alone', async () => {
      const backups = new KeystoreBackups(file('backups-restore'), 3);
      await writeFile(file('target'), 'current keystore');
      await assert.rejects(within(5_000, backups.restore(await fifo(file('backup-fifo.keystore')), file('target'))), coded('ROLLBACK_FAILED', /is a FIFO/));
      await assert.rejects(backups.restore(file('no-such.keystore'), file('target')), coded('BACKUP_MISSING', /is gone/));
      await writeFile(file('huge.keystore'), Buffer.alloc(LIMITS.keystoreBytes + 1));
      await assert.rejects(backups.restore(file('huge.keystore'), file('target')), coded('INPUT_TOO_LARGE', /the limit is 4194304 bytes/));
      assert.equal(await readFile(file('target'), 'utf8'), 'current keystore');
    });
  });

  describe('state dir, config and MID files', () => {
    it('a journal file that is a FIFO or damaged JSON is STATE_DIR_UNUSABLE, and the damaged content is not echoed', async () => {
      const state = file('state-fifo');
      await mkdir(state);
      await fifo(join(state, 'journal.json'));
      await assert.rejects(within(5_000, new Journal(state).load()), coded('STATE_DIR_UNUSABLE', /journal\.json is a FIFO/));
      const damaged = file('state-damaged');
      await mkdir(damaged);
      await writeFile(join(damaged, 'last-result.json'), 'Zq{"ok": tru');
      await assert.rejects(new Journal(damaged).loadLastResult(), (err: unknown) => {
        coded('STATE_DIR_UNUSABLE', /last-result\.json is damaged: it is not JSON$/)(err);
        assert.doesNotMatch((err as Error).message, /Zq|tru|token/);
        return true;
      });
      assert.equal(await new Journal(file('state-empty')).load(), undefined, 'no journal yet is not an error');
    });

    it('a renewal key that is a FIFO is refused; a prepared renewal whose files are not regular files reads as not prepared', async () => {
      const journal = new Journal(file('state-key'));
      const renewal = await journal.renewalDir('r-1');
      await fifo(join(renewal, 'key.pem'));
      await writeFile(join(renewal, 'csr.pem'), 'csr');
      await assert.rejects(within(5_000, journal.readRenewalFile('r-1', 'key.pem')), coded('STATE_DIR_UNUSABLE', /key\.pem is a FIFO/));
      assert.equal(await within(5_000, readPrepared(journal, 'r-1')), undefined);
    });

    it('the agent config: a FIFO is CONFIG_UNREADABLE, a file over 256 KiB CONFIG_INVALID', async () => {
      await assert.rejects(within(5_000, loadAgentConfig(await fifo(file('agent.yaml')))), coded('CONFIG_UNREADABLE', /^the agent config .*agent\.yaml is a FIFO/));
      await writeFile(file('big.yaml'), `# ${'x'.repeat(LIMITS.agentConfigBytes)}\n`);
      await assert.rejects(loadAgentConfig(file('big.yaml')), coded('CONFIG_INVALID', /the limit is 262144 bytes/));
    });

    it('a config.xml saved for a restore is read with the config.xml bound and refused when it is not a regular file', async () => {
      await assert.rejects(within(5_000, readConfigXmlBytes(await fifo(file('config.xml.bak')))), coded('MID_CONFIG_INVALID', /is a FIFO/));
      await writeFile(file('config-big.xml'), Buffer.alloc(LIMITS.configXmlBytes + 1, 0x20));
      await assert.rejects(readConfigXmlBytes(file('config-big.xml')), coded('INPUT_TOO_LARGE', /the limit is 262144 bytes/));
    });

    it('the keystore check after an import refuses /dev/zero with KEYSTORE_VERIFY_FAILED at once', async () => {
      await symlink('/dev/zero', file('imported-zero'));
      await assert.rejects(within(5_000, verifyKeystoreHolds(file('imported-zero'), 'changeit', 'defaultsecuritykeypairhandle', [])), coded('KEYSTORE_VERIFY_FAILED', /character device/));
    });

    it('the health check reads nothing from a MID log that is a FIFO, without blocking', async () => {
      assert.equal(await within(5_000, readLogSince(await fifo(file('agent0.log.0')), 0)), '');
      await writeFile(file('agent.log'), 'line one\nSSLHandshakeException\n');
      assert.equal(await readLogSince(file('agent.log'), 9), 'SSLHandshakeException\n');
    });
  });
});
