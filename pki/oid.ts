/**
 * OBJECT IDENTIFIER content octets (X.690 §8.19) with arcs of any size. node-forge refuses arcs
 * above 32 bits, and UUID OIDs (2.25.<128-bit integer>, ITU-T X.667) need more.
 */

/** Dotted text → content octets as a latin1 string (the form node-forge's asn1 nodes hold). */
export function encodeOid(dotted: string): string {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new Error(`"${dotted.slice(0, 80)}" is not a dotted OID`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [first, second, ...rest] = arcs as [bigint, bigint, ...bigint[]];
  if (first < 2n && second > 39n) throw new Error(`OID ${dotted.slice(0, 80)}: second arc must be below 40`);
  const bytes: number[] = [];
  for (const arc of [first * 40n + second, ...rest]) bytes.push(...base128(arc));
  return String.fromCharCode(...bytes);
}

/** Content octets (latin1 string or bytes) → dotted text. */
export function decodeOid(content: string | Uint8Array): string {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'latin1') : content;
  const values: bigint[] = [];
  let value = 0n;
  let pending = false;
  for (const byte of bytes) {
    value = (value << 7n) | BigInt(byte & 0x7f);
    pending = (byte & 0x80) !== 0;
    if (!pending) { values.push(value); value = 0n; }
  }
  if (pending || values.length === 0) throw new Error('truncated OBJECT IDENTIFIER');
  const head = values[0] as bigint;
  const first = head < 80n ? head / 40n : 2n;
  return [first, head - first * 40n, ...values.slice(1)].map(String).join('.');
}

function base128(value: bigint): number[] {
  const out = [Number(value & 0x7fn)];
  for (let v = value >> 7n; v > 0n; v >>= 7n) out.unshift(Number(v & 0x7fn) | 0x80);
  return out;
}
