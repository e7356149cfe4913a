/**
 * A minimal DER tag-length-value reader that keeps byte offsets, so a certificate can be sliced
 * out of a PKCS#7 or PKCS#12 container byte-for-byte (re-encoding could change the bytes).
 */
export interface Tlv {
  tag: number;
  constructed: boolean;
  /** Offset of the tag byte, of the content, and one past the end, in the buffer read. */
  start: number;
  contentStart: number;
  end: number;
}

const MAX_DEPTH = 32;

export function readTlv(buf: Uint8Array, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new RangeError('DER: truncated header');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new RangeError('DER: multi-byte tags are not supported');
  let pos = offset + 1;
  const first = buf[pos++] as number;
  let length = first;
  if (first & 0x80) {
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw new RangeError('DER: indefinite or oversized length');
    if (pos + count > limit) throw new RangeError('DER: truncated length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[pos++] as number);
  }
  if (pos + length > limit) throw new RangeError('DER: value runs past its container');
  return { tag, constructed: (tag & 0x20) !== 0, start: offset, contentStart: pos, end: pos + length };
}

/** The direct children of a constructed TLV. */
export function childrenOf(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = parent.contentStart; pos < parent.end; ) {
    const child = readTlv(buf, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

/** Walks down by child indexes, e.g. path [1, 0] = second child's first child. */
export function descend(buf: Uint8Array, root: Tlv, path: number[]): Tlv {
  if (path.length > MAX_DEPTH) throw new RangeError('DER: path too deep');
  let node = root;
  for (const index of path) {
    const child = childrenOf(buf, node)[index];
    if (!child) throw new RangeError('DER: missing element');
    node = child;
  }
  return node;
}

export function slice(buf: Uint8Array, tlv: Tlv): Buffer {
  return Buffer.from(buf.subarray(tlv.start, tlv.end));
}
