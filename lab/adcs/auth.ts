import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Principal } from './enroll.js';
import type { AdcsUser } from './types.js';

export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403; reason: string };

/**
 * IIS in front of certsrv: a TLS client certificate (verified by the TLS layer against the
 * configured client CAs) or HTTP Basic. IIS also offers Negotiate and NTLM; the lab advertises
 * them the way IIS does but implements only Basic, so those handshakes end in 401.
 */
export class Authenticator {
  private readonly users: Map<string, { name: string; digest: Buffer }>;

  constructor(users: AdcsUser[], private readonly realm: string) {
    this.users = new Map(users.map((u) => [u.username.toLowerCase(), { name: u.username, digest: digest(u.password) }]));
  }

  /** The WWW-Authenticate headers of a 401, in IIS's order. */
  challenges(): string[] {
    return ['Negotiate', 'NTLM', `Basic realm="${this.realm}"`];
  }

  authenticate(req: IncomingMessage): AuthResult {
    const fromCert = clientCertificate(req);
    if (fromCert) return fromCert;
    const header = req.headers.authorization;
    if (!header) return { ok: false, status: 401, reason: 'no credentials' };
    const basic = /^Basic\s+([A-Za-z0-9+/=]{1,4096})\s*$/i.exec(header);
    if (!basic) return { ok: false, status: 401, reason: `unsupported scheme ${header.split(/\s/, 1)[0] ?? ''}` };
    const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? undefined : this.users.get(decoded.slice(0, colon).toLowerCase());
    // Compare digests in constant time; an unknown user still costs one comparison.
    const given = digest(colon < 0 ? '' : decoded.slice(colon + 1));
    const matches = timingSafeEqual(given, user?.digest ?? digest('\0no-such-user'));
    if (!user || !matches) return { ok: false, status: 401, reason: 'bad credentials' };
    return { ok: true, principal: { name: user.name, method: 'basic' } };
  }
}

/** A presented client certificate decides alone: trusted → its CN; untrusted → IIS 403.16. */
function clientCertificate(req: IncomingMessage): AuthResult | undefined {
  const socket = req.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  if (!socket.authorized) return { ok: false, status: 403, reason: `untrusted client certificate (${String(socket.authorizationError)})` };
  const cn = peer.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  if (!name) return { ok: false, status: 403, reason: 'client certificate has no CN to map' };
  return { ok: true, principal: { name, method: 'client-certificate' } };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
