/**
 * Windows ACLs for keys and the state dir (agent/windows/acl.ts). icacls is a stub under wine, so
 * the arguments and the SDDL verdicts are tested here; the ACLs themselves only on real Windows.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { currentAccount, icaclsProtectArgs, icaclsRemoveBroadArgs, judgeSddl, protectKeyFileOrRemove } from '../../agent/windows/acl.js';
import { stateDirAclCheck } from '../../agent/windows/preflight-acl.js';

describe('windows/acl: icacls arguments and ACL checks', () => {
  it('protects a directory: inheritance removed, full control for SYSTEM, Administrators and the owner, inherited by children', () => {
    assert.deepEqual(icaclsProtectArgs('C:\\ProgramData\\midcert\\state', { directory: true, account: 'HOST\\svc-midcert' }), [
      'C:\\ProgramData\\midcert\\state', '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F', 'HOST\\svc-midcert:(OI)(CI)F', '/q',
    ]);
  });

  it('protects a key file without inheritance flags, and de-duplicates SYSTEM as the owner', () => {
    assert.deepEqual(icaclsProtectArgs('C:\\keys\\mid 01.key', { directory: false, account: '*S-1-5-18' }), ['C:\\keys\\mid 01.key', '/inheritance:r', '/grant:r', '*S-1-5-18:F', '*S-1-5-32-544:F', '/q']);
    assert.throws(() => icaclsProtectArgs('relative\\key', { directory: false }));
  });

  it('removes the broad well-known grants by SID (language-neutral)', () => {
    assert.deepEqual(icaclsRemoveBroadArgs('C:\\s'), ['C:\\s', '/remove:g', '*S-1-1-0', '*S-1-5-32-545', '*S-1-5-11', '*S-1-3-0', '/q']);
  });

  it('names the account from USERDOMAIN\\USERNAME, LocalSystem as SYSTEM', () => {
    assert.equal(currentAccount({ USERDOMAIN: 'CORP', USERNAME: 'midsvc' }), 'CORP\\midsvc');
    assert.equal(currentAccount({ USERDOMAIN: 'CORP', USERNAME: 'HOST01$' }), '*S-1-5-18');
    assert.equal(currentAccount({}), '*S-1-5-18');
  });

  it('accepts a protected DACL granting only SYSTEM, Administrators and the owner', () => {
    const owner = 'S-1-5-21-1-2-3-1001';
    assert.equal(judgeSddl(`O:${owner}G:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;${owner})`).ok, true);
    assert.equal(judgeSddl('O:BAG:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)(D;;FA;;;WD)').ok, true, 'deny ACEs are fine');
  });

  it('refuses inheritance and extra principals, naming them', () => {
    const inherited = judgeSddl('O:BAG:SYD:AI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)');
    assert.equal(inherited.ok, false);
    assert.match(inherited.ok ? '' : inherited.why, /inheritance is not removed/);
    const users = judgeSddl('O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)(A;;FA;;;WD)(A;;FA;;;S-1-5-21-9-9-9-500)');
    assert.equal(users.ok, false);
    const why = users.ok ? '' : users.why;
    assert.match(why, /BUILTIN\\Users has access/);
    assert.match(why, /Everyone has access/);
    assert.match(why, /S-1-5-21-9-9-9-500 has access/);
    const junk = judgeSddl('not an sddl');
    assert.ok(!junk.ok && junk.unverified);
  });

  it('preflight: a good ACL passes, an open one is an error, an unreadable one a warning (never a mode)', async () => {
    const good = await stateDirAclCheck('C:\\s', async () => ({ ok: true, sddl: 'O:SYD:P(A;;FA;;;SY)' }));
    assert.deepEqual([good.ok, good.severity, good.code], [true, 'info', 'OK']);
    const open = await stateDirAclCheck('C:\\s', async () => ({ ok: false, unverified: false, why: 'Everyone has access (FA)', sddl: '' }));
    assert.deepEqual([open.ok, open.severity, open.code], [false, 'error', 'STATE_DIR_UNUSABLE']);
    assert.match(open.message, /icacls "C:\\s" \/inheritance:r \/grant:r/);
    const wine = await stateDirAclCheck('C:\\s', async () => ({ ok: false, unverified: true, why: 'no PowerShell' }));
    assert.deepEqual([wine.ok, wine.severity, wine.code], [false, 'warning', 'STATE_DIR_ACL_UNVERIFIED']);
    for (const f of [good, open, wine]) assert.doesNotMatch(f.message, /mode 0/);
  });

  it('removes a key file whose ACL cannot be restricted, and says so (OUTPUT_FAILED)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-acl-'));
    try {
      const key = join(dir, 'key.pem');
      await writeFile(key, 'key material stand-in');
      // Here icacls.exe does not exist, as when it fails on a real host: the key must not stay.
      await assert.rejects(protectKeyFileOrRemove(key, 'win32'), (err: unknown) => err instanceof MidcertError && err.code === 'OUTPUT_FAILED' && /was removed/.test(err.message));
      await assert.rejects(stat(key), 'the key file is gone');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
