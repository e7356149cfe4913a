import { createPrivateKey } from 'node:crypto';

/**
 * True when an upload holds a private key: any PEM `… PRIVATE KEY-----` block (PKCS#8, encrypted
 * PKCS#8, PKCS#1, SEC1), or a DER body that parses as a key. The instance must never store one
 * (DESIGN §4 "Never upload the private key"). A PKCS#12/PFX file is not recognised as such.
 */
export function holdsPrivateKey(body: Buffer): boolean {
  if (body.toString('latin1').includes('PRIVATE KEY-----')) return true;
  return body[0] === 0x30 && parsesAsDerKey(body);
}

function parsesAsDerKey(body: Buffer): boolean {
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key: body, format: 'der', type });
      return true;
    } catch (err) {
      // An encrypted PKCS#8 key is still a key, even though we cannot open it.
      if ((err as { code?: string }).code === 'ERR_MISSING_PASSPHRASE') return true;
    }
  }
  return false;
}
