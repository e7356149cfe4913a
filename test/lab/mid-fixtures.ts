import { constants, createHash, publicEncrypt, randomBytes, X509Certificate } from 'node:crypto';
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
  /** user:password pairs accepted with Basic auth (the MID side of protocol §1; no client certificate needed). */
  basicUsers: Set<string>;
  /** Every accepted poll body, in order, per MID name. */
  polls: Map<string, PollSeen[]>;
  /** Commands (ecc_queue output rows) waiting per MID name; delivered once (protocol §2). */
  commands: Map<string, { sys_id: string; topic: string; name: string; source: string; payload: string }[]>;
  /** Protocol §4–5: public key stored on first poll; validated; credential probe to the stored key when set. */
  publicKeys: Map<string, string>;
  validated: Map<string, string>;
  probeCredentials: boolean;
  queue(mid: string, command: { topic: string; name?: string; source?: string; payload?: string }): string;
  close(): Promise<void>;
}

export interface PollSeen {
  starting?: boolean;
  public_key?: string;
  responses?: { response_to: string; topic: string; name: string; payload: string }[];
  credential_ok?: boolean;
  auth: 'mutual' | 'basic';
}

export async function startTestInstance(ca: LabCa): Promise<TestInstance> {
  const tlsId = await ca.issueIdentity('CN=localhost', { ...PROFILES.server, sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const server = createServer({
    key: tlsId.keyPem, cert: tlsId.certPem + ca.intermediate.certPem, ca: ca.root.certPem + ca.intermediate.certPem,
    requestCert: true, rejectUnauthorized: false,
  });
  const instance: TestInstance = {
    url: '', server, published: new Set(), heartbeats: new Map(), rejectedHandshakes: 0, unauthorized: 0, basicAuthSeen: 0,
    basicUsers: new Set(), polls: new Map(), commands: new Map(), publicKeys: new Map(), validated: new Map(), probeCredentials: false,
    queue: (mid, command) => {
      const id = randomBytes(16).toString('hex');
      const list = instance.commands.get(mid) ?? [];
      list.push({ sys_id: id, topic: command.topic, name: command.name ?? '', source: command.source ?? '', payload: command.payload ?? '' });
      instance.commands.set(mid, list);
      return id;
    },
    close: () => new Promise<void>((done) => { server.closeAllConnections(); server.close(() => done()); }),
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    // A socket without any client certificate may still log in with Basic auth (protocol §1).
    if (!socket.authorized && socket.getPeerCertificate(false)?.raw) {
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
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate(false);
      const hasCert = Boolean(peer?.raw);
      if (hasCert && !socket.authorized) return;
      const basic = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString() : undefined;
      // Unknown Basic users get what lab/instance gave before basic auth: a dropped connection.
      if (!hasCert && (basic === undefined || !instance.basicUsers.has(basic))) { socket.destroy(); return; }
      const fp = peer?.raw ? createHash('sha256').update(peer.raw).digest('hex') : '';
      res.setHeader('Content-Type', 'application/json');
      const allowed = hasCert ? instance.published.has(fp) : instance.basicUsers.has(basic as string);
      if (req.url !== '/api/mid/heartbeat' || req.method !== 'POST' || !allowed) {
        instance.unauthorized++;
        res.writeHead(401).end(JSON.stringify({ error: { message: 'User Not Authenticated', detail: 'Required to provide Auth information' }, status: 'failure' }));
        return;
      }
      const poll = JSON.parse(body) as PollSeen & { name: string };
      const { name } = poll;
      instance.heartbeats.set(name, (instance.heartbeats.get(name) ?? 0) + 1);
      instance.polls.set(name, [...(instance.polls.get(name) ?? []), { ...poll, auth: hasCert ? 'mutual' : 'basic' }]);
      if (poll.public_key && !instance.publicKeys.has(name)) {
        instance.publicKeys.set(name, poll.public_key);
        instance.validated.set(name, 'true'); // autoValidate
      }
      const commands = instance.commands.get(name) ?? [];
      instance.commands.delete(name);
      const key = instance.publicKeys.get(name);
      const credential = instance.probeCredentials && key && instance.validated.get(name) === 'true'
        ? publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from('lab secret')).toString('base64') : undefined;
      res.writeHead(200).end(JSON.stringify({
        result: {
          sys_id: createHash('md5').update(name).digest('hex'), status: 'Up', validated: instance.validated.get(name) ?? 'false', commands,
          ...(credential ? { credential } : {}),
        },
      }));
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  instance.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return instance;
}
