import { MidcertError } from '../common/errors.js';

/** One `-----BEGIN X-----` … `-----END X-----` block found in a text, with where it sits. */
export interface PemBlock {
  label: string;
  /** Header lines such as `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encrypted keys). */
  headers: Record<string, string>;
  der: Buffer;
  /** Byte offsets in the scanned text (start of BEGIN line, end of END line). */
  start: number;
  end: number;
}

const BEGIN = /-----BEGIN ([A-Z0-9 #]+)-----/g;
const BASE64_LINE = /^[A-Za-z0-9+/=]*$/;

/** Finds every PEM block in `text`. Throws PEM_MALFORMED for a block with no END or bad base64. */
export function scanPem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  BEGIN.lastIndex = 0;
  for (let match = BEGIN.exec(text); match; match = BEGIN.exec(text)) {
    const label = match[1] as string;
    const endMarker = `-----END ${label}-----`;
    const endAt = text.indexOf(endMarker, match.index + match[0].length);
    if (endAt < 0) throw new MidcertError('PEM_MALFORMED', `PEM block "${label}" has no END line`);
    const inner = text.slice(match.index + match[0].length, endAt);
    blocks.push({ label, ...decodeBody(label, inner), start: match.index, end: endAt + endMarker.length });
    BEGIN.lastIndex = endAt + endMarker.length;
  }
  return blocks;
}

function decodeBody(label: string, inner: string): { headers: Record<string, string>; der: Buffer } {
  const headers: Record<string, string> = {};
  const base64: string[] = [];
  for (const raw of inner.split('\n')) {
    const line = raw.replace(/[\r\x1a]+$/g, '').trim();
    if (line === '') continue;
    const header = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
    if (header && base64.length === 0) {
      headers[header[1] as string] = header[2] as string;
      continue;
    }
    if (!BASE64_LINE.test(line)) {
      throw new MidcertError('PEM_MALFORMED', `PEM block "${label}" holds a non-base64 line`);
    }
    base64.push(line);
  }
  const der = Buffer.from(base64.join(''), 'base64');
  if (der.length === 0) throw new MidcertError('PEM_MALFORMED', `PEM block "${label}" is empty`);
  return { headers, der };
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** True when the bytes look like PEM text rather than binary DER. */
export function looksLikePem(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 64 * 1024))).toString('latin1');
  return head.includes('-----BEGIN ');
}
