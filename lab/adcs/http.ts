import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A certsrv form post is a CSR of a few KiB; anything past this bound is refused with 413. */
export const MAX_FORM_BYTES = 64 * 1024;

const DRAIN_FACTOR = 16;

export const CONTENT_TYPE = {
  html: 'text/html',
  cert: 'application/pkix-cert',
  pkcs7: 'application/x-pkcs7-certificates',
} as const;

export type FormResult = { ok: true; fields: Map<string, string> } | { ok: false; status: 413 };

/**
 * Reads an application/x-www-form-urlencoded body. Field names are matched case-insensitively
 * (ASP's Request.Form does); other content types read as an empty form, as they do in ASP.
 */
export function readForm(req: IncomingMessage, limit = MAX_FORM_BYTES): Promise<FormResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      // Past the bound the rest is read and dropped so the 413 reaches the client (closing
      // with unread data makes TCP reset the connection); a flood past DRAIN_FACTOR is cut off.
      else if (size > limit * DRAIN_FACTOR) req.destroy();
    });
    req.on('error', reject);
    req.on('close', () => resolve({ ok: false, status: 413 })); // no-op once 'end' resolved
    req.on('end', () => {
      if (size > limit) return resolve({ ok: false, status: 413 });
      const type = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase();
      if (type !== 'application/x-www-form-urlencoded') return resolve({ ok: true, fields: new Map() });
      resolve({ ok: true, fields: firstValues(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) });
    });
  });
}

/** Query parameters with lower-cased names (clients send both `Enc` and `ENC`). */
export function queryOf(url: URL): Map<string, string> {
  return firstValues(url.searchParams);
}

function firstValues(params: URLSearchParams): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of params) {
    const key = name.toLowerCase();
    if (!out.has(key)) out.set(key, value);
  }
  return out;
}

/** Writes a response with the headers IIS + classic ASP put on every certsrv answer. */
export function send(res: ServerResponse, status: number, contentType: string, body: string | Buffer, headers: Record<string, string | string[]> = {}): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', bytes.length);
  res.setHeader('Cache-Control', 'private');
  res.setHeader('Server', 'Microsoft-IIS/10.0');
  res.setHeader('X-Powered-By', 'ASP.NET');
  if (!/ASPSESSIONID/.test(String(res.req?.headers.cookie ?? ''))) {
    res.setHeader('Set-Cookie', `ASPSESSIONID${randomLetters(8)}=${randomLetters(24)}; secure; path=/`);
  }
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.end(bytes);
}

function randomLetters(n: number): string {
  return [...randomBytes(n)].map((b) => String.fromCharCode(65 + (b % 26))).join('');
}
