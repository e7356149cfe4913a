import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { certsOnlyPkcs7 } from '../../lab/adcs/encoding.js';
import type { LabCa } from '../../lab/lab-ca.js';
import { parseCsr } from '../../pki/csr.js';
import { PROFILES } from '../../pki/issue.js';
import { scanPem } from '../../pki/pem.js';

/**
 * A STAND-IN for an RFC 7030 EST server, for the `est` adapter tests only (no real EST server is
 * packaged for Debian). It follows the RFC where the adapter depends on it, and nothing looser:
 * - GET  /.well-known/est[/label]/cacerts → 200 application/pkcs7-mime, base64 certs-only (§4.1.3),
 *   no client authentication needed (§4.1.1).
 * - POST /.well-known/est[/label]/simpleenroll, Content-Type application/pkcs10, base64 DER body
 *   (§4.2.1) → 200 application/pkcs7-mime; smime-type=certs-only, Content-Transfer-Encoding: base64,
 *   the issued certificate only (§4.2.3); 202 + Retry-After when held (§4.2.3).
 * - HTTP Basic (401 with WWW-Authenticate: Basic) or a TLS client certificate from clientCaPem (§3.2.3).
 * Labels pick behaviour: (none) issue a client certificate; `pending` answer 202 to the first two
 * tries of each CSR; `server` issue serverAuth only; `busy` 503 + Retry-After.
 */
export interface EstRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  transferEncoding: string | undefined;
  /** The longest line of the request body (RFC 2045 base64 lines are at most 76). */
  longestLine: number;
  csrSha256: string | undefined;
  auth: 'basic' | 'client-certificate' | 'none';
  status: number;
}

export interface RunningEst {
  url: string;
  requests: EstRequest[];
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;

export async function startEstServer(options: { ca: LabCa; tls: { certPem: string; keyPem: string }; user: [string, string]; clientCaPem: string }): Promise<RunningEst> {
  const requests: EstRequest[] = [];
  const triesByCsr = new Map<string, number>();
  const server: Server = createServer({ cert: options.tls.certPem, key: options.tls.keyPem, requestCert: true, rejectUnauthorized: false, ca: options.clientCaPem }, (req, res) => {
    void readBody(req).then((body) => {
      const log: EstRequest = {
        method: req.method ?? '', path: req.url ?? '', contentType: req.headers['content-type'], transferEncoding: String(req.headers['content-transfer-encoding'] ?? '') || undefined,
        longestLine: body ? Math.max(0, ...body.toString('latin1').split(/\r?\n/).map((l) => l.length)) : 0,
        csrSha256: undefined, auth: 'none', status: 0,
      };
      requests.push(log);
      log.status = handle(req, res, body, log);
    });
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

  function handle(req: IncomingMessage, res: ServerResponse, body: Buffer | undefined, log: EstRequest): number {
    const match = /^\/\.well-known\/est(?:\/([A-Za-z0-9._~-]+))?\/(cacerts|simpleenroll)$/.exec(req.url ?? '');
    if (!match) return text(res, 404, 'not found');
    const [, label = '', operation] = match;
    if (operation === 'cacerts') {
      if (req.method !== 'GET') return text(res, 405, 'GET only');
      return pkcs7(res, [options.ca.intermediate.cert.der, options.ca.root.cert.der]);
    }
    if (req.method !== 'POST') return text(res, 405, 'POST only');
    log.auth = authenticate(req);
    if (log.auth === 'none') {
      res.setHeader('WWW-Authenticate', 'Basic realm="estrealm"');
      return text(res, 401, 'authentication required');
    }
    if (body === undefined) return text(res, 413, 'request too large');
    if ((req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() !== 'application/pkcs10') return text(res, 415, 'expected application/pkcs10');
    let csr;
    try {
      csr = parseCsr(Buffer.from(body.toString('latin1').replace(/\s+/g, ''), 'base64'));
    } catch {
      return text(res, 400, 'the body is not a base64 PKCS#10 request');
    }
    if (!csr.signatureValid) return text(res, 400, 'CSR signature invalid');
    log.csrSha256 = createHash('sha256').update(csr.der).digest('hex');
    if (label === 'busy') {
      res.setHeader('Retry-After', '5');
      return text(res, 503, 'the CA is busy');
    }
    if (label === 'pending') {
      const tries = (triesByCsr.get(log.csrSha256) ?? 0) + 1;
      triesByCsr.set(log.csrSha256, tries);
      if (tries <= 2) {
        res.setHeader('Retry-After', '1');
        return text(res, 202, 'request held for manual approval');
      }
    }
    const leafPem = options.ca.signCsr(csr.der, { profile: label === 'server' ? PROFILES.server : PROFILES.client, days: 90 });
    return pkcs7(res, scanPem(leafPem).map((b) => b.der));
  }

  function authenticate(req: IncomingMessage): EstRequest['auth'] {
    const socket = req.socket as TLSSocket;
    if (socket.authorized && Object.keys(socket.getPeerCertificate() ?? {}).length > 0) return 'client-certificate';
    const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.authorization ?? '');
    return basic && Buffer.from(basic[1] as string, 'base64').toString('utf8') === options.user.join(':') ? 'basic' : 'none';
  }

  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_BODY ? undefined : Buffer.concat(chunks)));
  });
}

function text(res: ServerResponse, status: number, message: string): number {
  res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${message}\n`);
  return status;
}

function pkcs7(res: ServerResponse, ders: Buffer[]): number {
  const b64 = certsOnlyPkcs7(ders).toString('base64').match(/.{1,64}/g)?.join('\r\n') ?? '';
  res.writeHead(200, { 'Content-Type': 'application/pkcs7-mime; smime-type=certs-only', 'Content-Transfer-Encoding': 'base64' }).end(`${b64}\r\n`);
  return 200;
}
