import { readBoundedFile } from '../../common/bounded-read.js';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { publicKeysEqual } from '../../pki/keys.js';
import { findEntry, readKeystore } from '../../pki/keystore.js';

/** SHA-256 of the leaf under the alias, or '' when the keystore or entry cannot be read. */
export async function currentLeafSha256(keystorePath: string, storepass: string, alias: string): Promise<string> {
  try {
    const store = readKeystore(await readBoundedFile(keystorePath, { what: 'the keystore', maxBytes: LIMITS.keystoreBytes, unreadableCode: 'KEYSTORE_UNREADABLE' }), storepass);
    return findEntry(store, alias)?.chain[0]?.sha256 ?? '';
  } catch {
    return '';
  }
}

/**
 * After an import: the alias must be a private-key entry whose chain is exactly the expected one
 * (by SHA-256, leaf first) and whose key matches the leaf.
 */
export async function verifyKeystoreHolds(keystorePath: string, storepass: string, alias: string, expectedChain: string[]): Promise<void> {
  const bytes = await readBoundedFile(keystorePath, {
    what: 'the keystore after import', maxBytes: LIMITS.keystoreBytes, unreadableCode: 'KEYSTORE_VERIFY_FAILED', tooLargeCode: 'KEYSTORE_VERIFY_FAILED',
  });
  let store;
  try {
    store = readKeystore(bytes, storepass);
  } catch (err) {
    throw new MidcertError('KEYSTORE_VERIFY_FAILED', `the keystore cannot be read after import: ${isMidcertError(err) ? err.message : 'parse error'}`);
  }
  const entry = findEntry(store, alias);
  if (!entry) throw new MidcertError('KEYSTORE_VERIFY_FAILED', `alias ${alias} is missing after import`);
  if (entry.kind !== 'PrivateKeyEntry' || !entry.privateKey) throw new MidcertError('KEYSTORE_VERIFY_FAILED', `alias ${alias} is not a private key entry after import`);
  const actual = entry.chain.map((c) => c.sha256);
  if (actual[0] !== expectedChain[0]) throw new MidcertError('KEYSTORE_VERIFY_FAILED', `alias ${alias} holds leaf ${actual[0]?.slice(0, 16) ?? '(none)'}…, not the new one`);
  if (actual.join(',') !== expectedChain.join(',')) throw new MidcertError('KEYSTORE_VERIFY_FAILED', `alias ${alias} holds a chain of ${actual.length}, not the expected ${expectedChain.length}`);
  const leaf = entry.chain[0];
  if (!leaf || !publicKeysEqual(leaf.publicKey, entry.privateKey)) throw new MidcertError('KEYSTORE_VERIFY_FAILED', `the key under ${alias} does not match its certificate`);
}
