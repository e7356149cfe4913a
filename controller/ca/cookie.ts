import { CaAnswer, rejected } from './adapter.js';

/**
 * Poll cookies. Each is self-contained (the orchestrator persists it and nothing else), starts
 * with the adapter type so a cookie handed to the wrong adapter is refused, and carries what
 * `poll` needs to check the result against the CSR:
 *   adcs:<request id>:<key id>        the certsrv request id, then the CSR key's SHA-256
 *   est:<CSR DER, base64url>          RFC 7030 §4.2.3: the client repeats the same request
 *   exec:<base64url JSON {c, csr}>    the helper's own cookie, verbatim, and the CSR (POLL gets both)
 */
const MAX_COOKIE = 64 * 1024;

function body(cookie: string, type: string): string {
  if (typeof cookie !== 'string' || cookie.length > MAX_COOKIE || !cookie.startsWith(`${type}:`)) {
    throw rejected(`the poll cookie is not one this ${type} adapter handed out`);
  }
  return cookie.slice(type.length + 1);
}

export function adcsCookie(requestId: number, keyId: string): string {
  return `adcs:${requestId}:${keyId}`;
}

export function readAdcsCookie(cookie: string): { requestId: number; keyId: string } {
  const match = /^(\d{1,12}):([A-Za-z0-9_-]{43})$/.exec(body(cookie, 'adcs'));
  if (!match) throw rejected('the adcs poll cookie is malformed');
  return { requestId: Number(match[1]), keyId: match[2] as string };
}

export function estCookie(csrDer: Buffer): string {
  return `est:${csrDer.toString('base64url')}`;
}

export function readEstCookie(cookie: string): Buffer {
  const text = body(cookie, 'est');
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw rejected('the est poll cookie is malformed');
  return Buffer.from(text, 'base64url');
}

export function execCookie(helperCookie: string, csrDer: Buffer): string {
  return `exec:${Buffer.from(JSON.stringify({ c: helperCookie, csr: csrDer.toString('base64') })).toString('base64url')}`;
}

export function readExecCookie(cookie: string): { helperCookie: string; csrDer: Buffer } {
  try {
    const parsed = JSON.parse(Buffer.from(body(cookie, 'exec'), 'base64url').toString('utf8')) as { c?: unknown; csr?: unknown };
    if (typeof parsed.c !== 'string' || typeof parsed.csr !== 'string') throw new Error('fields');
    return { helperCookie: parsed.c, csrDer: Buffer.from(parsed.csr, 'base64') };
  } catch (err) {
    if (err instanceof CaAnswer) throw err;
    throw rejected('the exec poll cookie is malformed');
  }
}
