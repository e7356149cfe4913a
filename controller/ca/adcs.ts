import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { CaConfig } from '../config.js';
import { CaAnswer, excerpt, rejected, settle, type CaAdapter, type CaOutcome } from './adapter.js';
import { readRenewals, readRetrievalPage, readSubmitPage } from './adcs-pages.js';
import { adcsCookie, readAdcsCookie } from './cookie.js';
import { readBasicAuth, readCertificateFile, readTlsMaterial, requireKey, type TlsMaterial } from './files.js';
import { assertSuccess, httpCall, mediaType, originOf, type HttpReply } from './http.js';
import { readSubmittedCsr, verifyIssued, type IssuerSource } from './verify.js';

/**
 * `adcs`: Microsoft ADCS web enrollment (certsrv), exactly as DESIGN.md §4 describes it.
 * ca.url is the certsrv base (https://ca.example.com/certsrv); ca.template names the template.
 * Basic auth (ca.username + ca.passwordFile) and/or a client certificate; trust from ca.caFile.
 */
// certsrv changes its answers for clients it does not take for a browser.
const USER_AGENT = 'Mozilla/5.0 (compatible; midcert CA adapter)';
const PKIX_CERT = 'application/pkix-cert';

interface Session {
  base: string;
  where: string;
  template: string;
  headers: Record<string, string>;
  tls: TlsMaterial;
  timeoutMs: number;
  chainFile: string | undefined;
}

export async function createAdcsAdapter(cfg: CaConfig): Promise<CaAdapter> {
  const base = requireKey(cfg, 'url').replace(/\/+$/, '');
  const template = requireKey(cfg, 'template');
  const authorization = await readBasicAuth(cfg);
  const tls = await readTlsMaterial(cfg);
  if (!authorization && !tls.cert) {
    throw new MidcertError('CONFIG_INVALID', 'ca.type adcs needs credentials: ca.username + ca.passwordFile, or ca.clientCertFile + ca.clientKeyFile');
  }
  if (cfg.chainFile) await readCertificateFile(cfg.chainFile, 'chainFile');
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT };
  if (authorization) headers.Authorization = authorization;
  const session: Session = { base, where: originOf(base), template, headers, tls, timeoutMs: cfg.timeoutSeconds * 1000, chainFile: cfg.chainFile };

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
      keyId, issuedUnder: `template ${session.template}`, moreIssuers: issuers(session),
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
  const reply = await httpCall(`${session.base}/${path}`, {
    method: post ? 'POST' : 'GET',
    headers: post ? { ...session.headers, 'Content-Type': post.contentType } : session.headers,
    body: post?.body,
    tls: session.tls,
    timeoutMs: session.timeoutMs,
    maxBytes: LIMITS.pemBytes,
  });
  assertSuccess(reply, session.where, session.headers.Authorization ? 'ca.username and ca.passwordFile' : 'ca.clientCertFile (is it mapped to an account?)');
  return reply;
}
