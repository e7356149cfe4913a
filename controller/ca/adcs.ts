import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { CaConfig } from '../config.js';
import { CaAnswer, excerpt, rejected, settle, type CaAdapter, type CaOutcome } from './adapter.js';
import { readRenewals, readRetrievalPage, readSubmitPage } from './adcs-pages.js';
import { adcsCookie, readAdcsCookie } from './cookie.js';
import { CaAuthFailure, createAdcsAuth, type AdcsAuth } from './adcs-auth.js';
import { readCertificateFile, readTlsMaterial, requireKey, type TlsMaterial } from './files.js';
import { assertSuccess, mediaType, originOf, type HttpReply } from './http.js';
import { readSubmittedCsr, verifyIssued, type IssuerSource } from './verify.js';

/**
 * `adcs`: Microsoft ADCS web enrollment (certsrv), exactly as DESIGN.md §4 describes it.
 * ca.url is the certsrv base (https://ca.example.com/certsrv); ca.template names the template.
 * ca.auth: basic, negotiate (Kerberos), ntlm (NTLMv2) or client-cert (adcs-auth.ts); trust
 * from ca.caFile.
 */
// certsrv changes its answers for clients it does not take for a browser.
const USER_AGENT = 'Mozilla/5.0 (compatible; midcert CA adapter)';
const PKIX_CERT = 'application/pkix-cert';

interface Session {
  base: string;
  where: string;
  template: string;
  headers: Record<string, string>;
  auth: AdcsAuth;
  tls: TlsMaterial;
  timeoutMs: number;
  chainFile: string | undefined;
}

export async function createAdcsAdapter(cfg: CaConfig): Promise<CaAdapter> {
  const base = requireKey(cfg, 'url').replace(/\/+$/, '');
  const template = requireKey(cfg, 'template');
  const session = await openSession(cfg, base, template);

  return {
    type: 'adcs',
    submit: (csrPem) => settle(async () => {
      const csr = readSubmittedCsr(csrPem);
      const form = new URLSearchParams({
        Mode: 'newreq', CertRequest: csr.pem, CertAttrib: `CertificateTemplate:${template}`, TargetStoreFlags: '0', SaveCert: 'yes',
      }).toString();
      const reply = await call(session, 'certfnsh.asp', { body: form, contentType: 'application/x-www-form-urlencoded' });
      const page = readSubmitPage(reply.body.toString('utf8'));
      switch (page.kind) {
        case 'issued':
          return retrieveAfterIssue(session, page.requestId, csr.keyId);
        case 'pending':
          return { kind: 'pending', cookie: adcsCookie(page.requestId, csr.keyId) };
        case 'refused':
          return rejected(`ADCS refused the request (template ${template}): ${excerpt(page.disposition)}`).outcome;
        default:
          return rejected(`ADCS at ${session.where} answered certfnsh.asp with a page that is neither issued, pending nor denied`).outcome;
      }
    }),
    poll: (cookie) => settle(async () => {
      const { requestId, keyId } = readAdcsCookie(cookie);
      return retrieve(session, requestId, keyId);
    }),
  };
}

async function openSession(cfg: CaConfig, base: string, template: string): Promise<Session> {
  const tls = await readTlsMaterial(cfg);
  const auth = await createAdcsAuth(cfg, base, tls);
  if (cfg.chainFile) await readCertificateFile(cfg.chainFile, 'chainFile');
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT };
  return { base, where: originOf(base), template, headers, auth, tls, timeoutMs: cfg.timeoutSeconds * 1000, chainFile: cfg.chainFile };
}

/** What `midcert ca probe` and `preflight` report (docs/controller-cli.md). */
export interface CaProbe {
  ok: boolean;
  type: string;
  url: string;
  auth: string;
  authenticated: boolean;
  code: string;
  message: string;
}

/**
 * GETs the certsrv start page with the configured authentication, once (no retry on 401).
 * code: OK | CA_AUTH_FAILED | CA_UNREACHABLE | CA_REFUSED | CONFIG_INVALID / CONFIG_UNREADABLE.
 */
export async function probeAdcs(cfg: CaConfig): Promise<CaProbe> {
  const url = cfg.url ?? '';
  let auth = cfg.auth ?? (cfg.username ? 'basic' : cfg.clientCertFile ? 'client-cert' : '');
  const result = (ok: boolean, authenticated: boolean, code: string, message: string): CaProbe => ({ ok, type: 'adcs', url, auth, authenticated, code, message });
  let session: Session;
  try {
    session = await openSession(cfg, requireKey(cfg, 'url').replace(/\/+$/, ''), cfg.template ?? '');
    auth = session.auth.mode;
  } catch (err) {
    if (err instanceof MidcertError) return result(false, false, err.code, err.message);
    throw err;
  }
  try {
    const reply = await call(session, '');
    return result(true, true, 'OK', `authenticated to the CA at ${session.where} with ${auth} (HTTP ${reply.status})`);
  } catch (err) {
    if (err instanceof CaAuthFailure) return result(false, false, 'CA_AUTH_FAILED', err.message);
    if (err instanceof CaAnswer) {
      const o = err.outcome;
      const reason = 'reason' in o ? o.reason : o.kind;
      return result(false, false, o.kind === 'unreachable' ? 'CA_UNREACHABLE' : 'CA_REFUSED', reason);
    }
    if (err instanceof MidcertError) return result(false, false, err.code, err.message);
    throw err;
  }
}

/**
 * The CA has issued; download it. If the download fails in transit, report the request pending
 * so the next poll fetches this certificate instead of asking the CA for another one.
 */
async function retrieveAfterIssue(session: Session, requestId: number, keyId: string): Promise<CaOutcome> {
  try {
    return await retrieve(session, requestId, keyId);
  } catch (err) {
    if (err instanceof CaAnswer && err.outcome.kind === 'unreachable') {
      return { kind: 'pending', cookie: adcsCookie(requestId, keyId), retryAfterSeconds: err.outcome.retryAfterSeconds ?? 30 };
    }
    throw err;
  }
}

/** certnew.cer?ReqID=n&Enc=b64: the certificate when issued, an HTML status page otherwise. */
async function retrieve(session: Session, requestId: number, keyId: string): Promise<CaOutcome> {
  const reply = await call(session, `certnew.cer?ReqID=${requestId}&Enc=b64`);
  if (mediaType(reply.headers) === PKIX_CERT) {
    return verifyIssued(certificatesIn(reply.body, `certnew.cer?ReqID=${requestId}`), {
      key: { keyId }, issuedUnder: `template ${session.template}`, moreIssuers: issuers(session),
    });
  }
  const page = readRetrievalPage(reply.body.toString('utf8'));
  if (page.kind === 'pending') return { kind: 'pending', cookie: adcsCookie(requestId, keyId) };
  if (page.kind === 'denied') return rejected(`ADCS denied request ${requestId}: ${excerpt(page.disposition)}`).outcome;
  return rejected(`ADCS has no certificate for request ${requestId}: ${excerpt(page.disposition)}`).outcome;
}

/** The issuing chain: ca.chainFile if set, else the CA's own certnew.p7b for the newest renewal. */
function issuers(session: Session): IssuerSource {
  const chainFile = session.chainFile;
  if (chainFile) return async () => ({ certs: await readCertificateFile(chainFile, 'chainFile'), source: `ca.chainFile ${chainFile}` });
  return async () => {
    const carc = await call(session, 'certcarc.asp');
    const renewals = readRenewals(carc.body.toString('utf8'));
    if (renewals === undefined) throw rejected(`ADCS at ${session.where}: certcarc.asp does not state nRenewals; set ca.chainFile`);
    const path = `certnew.p7b?ReqID=CACert&Renewal=${renewals}&Enc=bin`;
    const p7b = await call(session, path);
    return { certs: certificatesIn(p7b.body, path), source: `ADCS ${path}` };
  };
}

function certificatesIn(body: Buffer, what: string): Certificate[] {
  try {
    return readCertificates(body);
  } catch {
    throw rejected(`ADCS ${what} is not a readable certificate or PKCS#7`);
  }
}

async function call(session: Session, path: string, post?: { body: string; contentType: string }): Promise<HttpReply> {
  const reply = await session.auth.send(`${session.base}/${path}`, {
    method: post ? 'POST' : 'GET',
    headers: post ? { ...session.headers, 'Content-Type': post.contentType } : session.headers,
    body: post?.body,
    tls: session.tls,
    timeoutMs: session.timeoutMs,
    maxBytes: LIMITS.pemBytes,
  });
  assertSuccess(reply, session.where, session.auth.mode === 'client-cert' ? 'ca.clientCertFile (is it mapped to an account?)' : `ca.auth ${session.auth.mode} credentials`);
  return reply;
}
