import { createHash, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';

/** A lab CA plus a client identity for a MID, and its bundle in the exact MID shape. */
export interface MidPki {
  ca: LabCa;
  leaf: Identity;
  /** leaf, intermediate, root, PKCS#8 key — plain concatenation. */
  bundle: string;
}

export async function makeMidPki(cn = 'mid01'): Promise<MidPki> {
  const ca = await createLabCa(`mid-test ${cn}`);
  const leaf = await ca.issueIdentity(`CN=${cn},O=midcert Lab`, PROFILES.client);
  return { ca, leaf, bundle: bundleOf(ca, leaf) };
}

export function bundleOf(ca: LabCa, leaf: Identity): string {
  return leaf.certPem + ca.intermediate.certPem + ca.root.certPem + leaf.keyPem;
}

export function fingerprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/**
 * A tiny stand-in for the instance's mTLS heartbeat endpoint, with the contract lab/instance
 * serves: request a client certificate, destroy connections whose certificate does not chain to
 * the CA, 200 Up for published leaves, 401 otherwise.
 */
export interface TestInstance {
  url: string;
  server: Server;
  /** SHA-256 fingerprints (hex) of leaves that get 200. */
  published: Set<string>;
  heartbeats: Map<string, number>;
  rejectedHandshakes: number;
  unauthorized: number;
  /** Requests that carried a Basic Authorization header (accepted or not). */
  basicAuthSeen: number;
  close(): Promise<void>;
}

export async function startTestInstance(ca: LabCa): Promise<TestInstance> {
  const tlsId = await ca.issueIdentity('CN=localhost', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const server = createServer({
    key: tlsId.keyPem, cert: tlsId.certPem + ca.intermediate.certPem, ca: ca.root.certPem + ca.intermediate.certPem,
    requestCert: true, rejectUnauthorized: false,
  });
  const instance: TestInstance = {
    url: '', server, published: new Set(), heartbeats: new Map(), rejectedHandshakes: 0, unauthorized: 0, basicAuthSeen: 0,
    close: () => new Promise<void>((done) => { server.closeAllConnections(); server.close(() => done()); }),
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    if (!socket.authorized) {
      instance.rejectedHandshakes++;
      socket.destroy();
    }
  });
  server.on('request', (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    req.on('end', () => {
      if (req.headers.authorization?.startsWith('Basic ')) instance.basicAuthSeen++;
      // Node may already have parsed a request that arrived with the handshake's last flight;
      // the socket is destroyed, and the request must not count.
      if (!(req.socket as TLSSocket).authorized) return;
      const peer = (req.socket as TLSSocket).getPeerCertificate(false);
      const fp = peer?.raw ? createHash('sha256').update(peer.raw).digest('hex') : '';
      res.setHeader('Content-Type', 'application/json');
      if (req.url !== '/api/mid/heartbeat' || req.method !== 'POST' || !instance.published.has(fp)) {
        instance.unauthorized++;
        res.writeHead(401).end(JSON.stringify({ error: { message: 'User Not Authenticated', detail: 'Required to provide Auth information' }, status: 'failure' }));
        return;
      }
      const { name } = JSON.parse(body) as { name: string };
      instance.heartbeats.set(name, (instance.heartbeats.get(name) ?? 0) + 1);
      res.writeHead(200).end(JSON.stringify({ result: { sys_id: createHash('md5').update(name).digest('hex'), status: 'Up' } }));
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  instance.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return instance;
}
