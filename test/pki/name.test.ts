import assert from 'node:assert/strict';
import { formatName, parseSubject } from '../../pki/name.js';
import { MidcertError } from '../../common/errors.js';

describe('pki/name', () => {
  it('reads RFC 4514 most-specific-first and stores encoding order', () => {
    const dn = parseSubject('CN=mid01,O=Org,OU=ITOM');
    assert.deepEqual(dn.map((rdn) => rdn[0]?.type), ['OU', 'O', 'CN']);
    assert.equal(formatName(dn), 'CN=mid01,O=Org,OU=ITOM');
  });

  it('reads the OpenSSL slash form in encoding order', () => {
    const dn = parseSubject('/C=US/O=Acme Corp/CN=mid01');
    assert.equal(formatName(dn), 'CN=mid01,O=Acme Corp,C=US');
  });

  it('round-trips escaped separators and multi-valued RDNs', () => {
    const dn = parseSubject('CN=Smith\\, John+UID=jsmith,O=R\\+D');
    assert.equal(dn.length, 2);
    assert.equal(dn[1]?.length, 2);
    assert.equal(dn[1]?.[0]?.value, 'Smith, John');
    assert.equal(formatName(dn), 'CN=Smith\\, John+UID=jsmith,O=R\\+D');
  });

  it('decodes hex escapes as UTF-8', () => {
    assert.equal(parseSubject('CN=caf\\C3\\A9')[0]?.[0]?.value, 'café');
  });

  for (const bad of ['', 'CN', '=x', 'XX=1', 'CN=', 'C=USA', 'CN=#0403', 'CN=a\\']) {
    it(`refuses ${JSON.stringify(bad)} with SUBJECT_INVALID`, () => {
      assert.throws(() => parseSubject(bad), (e: unknown) => e instanceof MidcertError && e.code === 'SUBJECT_INVALID');
    });
  }
});
