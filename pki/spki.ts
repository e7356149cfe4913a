import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * SubjectPublicKeyInfo DER of a key (private or public), remembered per KeyObject. Comparing and
 * identifying keys export it again and again (a CA key once per certificate it signs); the export
 * is the costly part. The returned buffer is shared: read it, never write to it.
 */
const exported = new WeakMap<KeyObject, Buffer>();

export function spkiDer(key: KeyObject): Buffer {
  let der = exported.get(key);
  if (!der) {
    // A private KeyObject cannot export SPKI itself; derive its public half first.
    der = (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
    exported.set(key, der);
  }
  return der;
}
