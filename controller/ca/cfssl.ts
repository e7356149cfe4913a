import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import type { CaConfig } from '../config.js';
import { excerpt, rejected, settle, unreachable, type CaAdapter } from './adapter.js';
import { readCertificateFile, readTlsMaterial, requireKey } from './files.js';
import { assertSuccess, httpCall, originOf, retryAfterSeconds, type HttpReply } from './http.js';
import { readSubmittedCsr, verifyIssued } from './verify.js';

/**
 * `cfssl`: CloudFlare's CA server, `POST {url}/api/v1/cfssl/sign`. It returns the leaf only, so
 * the chain comes from ca.chainFile (required). An unknown profile silently falls back to the
 * default profile, which is why the EKU check in verifyIssued matters here most.
 */
interface CfsslReply {
  success?: boolean;
  result?: { certificate?: unknown } | null;
  errors?: Array<{ code?: unknown; message?: unknown }>;
}

export async function createCfsslAdapter(cfg: CaConfig): Promise<CaAdapter> {
  const base = requireKey(cfg, 'url').replace(/\/+$/, '');
  if (!cfg.chainFile) throw new MidcertError('CONFIG_INVALID', 'ca.chainFile is required for ca.type cfssl: cfssl returns only the leaf, and the chain must be published with it');
  const chainFile = cfg.chainFile;
  await readCertificateFile(chainFile, 'chainFile'); // fail at start, not at the first renewal
  const tls = await readTlsMaterial(cfg);
  const where = originOf(base);

  return {
    type: 'cfssl',
    submit: (csrPem) => settle(async () => {
      const csr = readSubmittedCsr(csrPem);
      const request: Record<string, string> = { certificate_request: csr.pem };
      if (cfg.profile) request.profile = cfg.profile;
      const reply = await httpCall(`${base}/api/v1/cfssl/sign`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(request), tls, timeoutMs: cfg.timeoutSeconds * 1000, maxBytes: LIMITS.pemBytes,
      });
      const leaf = certificateFrom(reply, where);
      return verifyIssued(leaf, {
        key: { publicKey: csr.publicKey },
        issuedUnder: cfg.profile ? `profile ${cfg.profile} (cfssl signs unknown profiles with its default profile)` : 'no profile sent: the cfssl default profile',
        moreIssuers: async () => ({ certs: await readCertificateFile(chainFile, 'chainFile'), source: `ca.chainFile ${chainFile}` }),
      });
    }),
    poll: async () => rejected('cfssl signs at once and never leaves a request pending; there is nothing to poll').outcome,
  };
}

function certificateFrom(reply: HttpReply, where: string): Certificate[] {
  const parsed = parseJson(reply.body);
  if (!parsed) {
    assertSuccess(reply, where, 'the cfssl URL');
    throw rejected(`cfssl at ${where} answered HTTP ${reply.status} without a JSON sign result`);
  }
  if (parsed.success !== true) {
    const first = parsed.errors?.[0];
    const message = first ? `${excerpt(String(first.message ?? ''))}${first.code !== undefined ? ` (code ${String(first.code)})` : ''}` : `HTTP ${reply.status}`;
    if (reply.status >= 500) throw unreachable(`cfssl at ${where} failed: ${message}`, retryAfterSeconds(reply.headers));
    throw rejected(`cfssl at ${where} refused to sign: ${message}`);
  }
  const pem = parsed.result?.certificate;
  if (typeof pem !== 'string') throw rejected(`cfssl at ${where} reported success without a certificate`);
  try {
    return readCertificates(Buffer.from(pem));
  } catch {
    throw rejected(`cfssl at ${where} returned a certificate that cannot be parsed`);
  }
}

function parseJson(body: Buffer): CfsslReply | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value && typeof value === 'object' ? (value as CfsslReply) : undefined;
  } catch {
    return undefined;
  }
}
