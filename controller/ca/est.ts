import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { CaConfig } from '../config.js';
import { rejected, settle, type CaAdapter, type CaOutcome } from './adapter.js';
import { estCookie, readEstCookie } from './cookie.js';
import { readBasicAuth, readCertificateFile, readTlsMaterial, requireKey, type TlsMaterial } from './files.js';
import { assertSuccess, httpCall, mediaType, originOf, retryAfterSeconds, type HttpReply } from './http.js';
import { readSubmittedCsr, verifyIssued, type IssuerSource, type SubmittedCsr } from './verify.js';

/**
 * `est`: RFC 7030 Enrollment over Secure Transport, simpleenroll only (simplereenroll needs TLS
 * authentication with the current certificate's key, which stays on the MID host).
 * ca.url is the server base (https://est.example.com); ca.profile, when set, is the optional CA
 * label (§3.2.2): {url}/.well-known/est/{profile}/simpleenroll.
 */
interface Est {
  prefix: string;
  where: string;
  headers: Record<string, string>;
  tls: TlsMaterial;
  timeoutMs: number;
  chainFile: string | undefined;
}

export async function createEstAdapter(cfg: CaConfig): Promise<CaAdapter> {
  const url = requireKey(cfg, 'url').replace(/\/+$/, '');
  // RFC 7030 §3.3: EST runs over TLS only (HTTP Basic credentials travel in it).
  if (!url.startsWith('https://')) throw new MidcertError('CONFIG_INVALID', `ca.url for ca.type est must be https:// (RFC 7030 §3.3), not ${originOf(url)}`);
  if (cfg.profile !== undefined && !/^[A-Za-z0-9._~-]+$/.test(cfg.profile)) throw new MidcertError('CONFIG_INVALID', 'ca.profile (the EST CA label) may hold only letters, digits and . _ ~ -');
  const authorization = await readBasicAuth(cfg);
  const tls = await readTlsMaterial(cfg);
  if (cfg.chainFile) await readCertificateFile(cfg.chainFile, 'chainFile');
  const headers: Record<string, string> = { 'User-Agent': 'midcert-est/1' };
  if (authorization) headers.Authorization = authorization;
  const est: Est = {
    prefix: `${url}/.well-known/est${cfg.profile ? `/${cfg.profile}` : ''}`,
    where: originOf(url), headers, tls, timeoutMs: cfg.timeoutSeconds * 1000, chainFile: cfg.chainFile,
  };
  return {
    type: 'est',
    submit: (csrPem) => settle(() => enroll(est, readSubmittedCsr(csrPem))),
    // §4.2.3: after a 202 the client repeats the same request; the cookie is that request.
    poll: (cookie) => settle(() => enroll(est, readSubmittedCsr(readEstCookie(cookie)))),
  };
}

async function enroll(est: Est, csr: SubmittedCsr): Promise<CaOutcome> {
  const reply = await httpCall(`${est.prefix}/simpleenroll`, {
    method: 'POST',
    headers: { ...est.headers, 'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64' },
    body: mimeBase64(csr.der),
    tls: est.tls, timeoutMs: est.timeoutMs, maxBytes: LIMITS.pemBytes,
  });
  if (reply.status === 202) {
    const retry = retryAfterSeconds(reply.headers);
    return retry === undefined ? { kind: 'pending', cookie: estCookie(csr.der) } : { kind: 'pending', cookie: estCookie(csr.der), retryAfterSeconds: retry };
  }
  assertSuccess(reply, est.where, authHint(est));
  if (reply.status !== 200) throw rejected(`the EST server at ${est.where} answered simpleenroll with HTTP ${reply.status}`);
  return verifyIssued(pkcs7Certificates(reply, 'simpleenroll'), { key: { publicKey: csr.publicKey }, issuedUnder: 'the EST server\'s profile', moreIssuers: issuers(est) });
}

/** The chain: ca.chainFile if set, else /cacerts (§4.1: the current CA certificates). */
function issuers(est: Est): IssuerSource {
  const chainFile = est.chainFile;
  if (chainFile) return async () => ({ certs: await readCertificateFile(chainFile, 'chainFile'), source: `ca.chainFile ${chainFile}` });
  return async () => {
    const reply = await httpCall(`${est.prefix}/cacerts`, { method: 'GET', headers: est.headers, tls: est.tls, timeoutMs: est.timeoutMs, maxBytes: LIMITS.pemBytes });
    assertSuccess(reply, est.where, authHint(est));
    return { certs: pkcs7Certificates(reply, 'cacerts'), source: `EST ${est.prefix.replace(/^https:\/\/[^/]+/, '')}/cacerts` };
  };
}

/**
 * A certs-only PKCS#7 (application/pkcs7-mime), base64 per §4.1.3/§4.2.3. Some servers send
 * it as binary DER regardless; both are read.
 */
function pkcs7Certificates(reply: HttpReply, operation: string): Certificate[] {
  const type = mediaType(reply.headers);
  if (type !== 'application/pkcs7-mime') throw rejected(`the EST server answered ${operation} with ${type || 'no Content-Type'}, not application/pkcs7-mime`);
  const body = reply.body;
  const der = body[0] === 0x30 ? body : Buffer.from(body.toString('latin1').replace(/[\s]+/g, ''), 'base64');
  try {
    const certs = readCertificates(der);
    if (certs.length > 0) return certs;
  } catch {
    // fall through to the same refusal
  }
  throw rejected(`the EST server's ${operation} answer is not a readable certs-only PKCS#7`);
}

/** Base64 in lines of 76 characters with CRLF (RFC 2045 §6.8), as Content-Transfer-Encoding: base64 means. */
function mimeBase64(der: Buffer): string {
  return `${(der.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')}\r\n`;
}

function authHint(est: Est): string {
  return est.headers.Authorization ? 'ca.username and ca.passwordFile' : 'the EST server\'s authentication (ca.username/ca.passwordFile or ca.clientCertFile)';
}
