import { randomBytes } from 'node:crypto';
import type { Server } from 'node:https';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { certificateToPem, type Certificate } from '../../pki/certificate.js';
import type { Log } from './log.js';

export interface ServerIdentity {
  certPem: string;
  keyPem: string;
}

/** TLS context options with the given client-certificate trust anchors (an empty list trusts nothing). */
export function secureContextOptions(identity: ServerIdentity, anchors: readonly Certificate[]): SecureContextOptions {
  // `ca: []` (not undefined) so Node does not fall back to its public root store.
  return { cert: identity.certPem, key: identity.keyPem, ca: anchors.map(certificateToPem) };
}

/**
 * Mutual TLS on the one HTTPS listener. The server asks every client for a certificate without
 * requiring one (Basic-auth REST clients have none). A client that presents a certificate which
 * does not verify against the published CA chain is refused the way a real mTLS endpoint refuses
 * it: the connection is dropped before any HTTP is answered.
 */
export class ClientTrust {
  private fingerprintKey = '';
  private anchors: Certificate[] = [];
  private readonly certificateSockets = new Set<TLSSocket>();

  constructor(private readonly server: Server, private readonly identity: ServerIdentity, private readonly log: Log) {
    // First in line, so a refused socket is gone before the HTTP layer attaches a parser to it.
    server.prependListener('secureConnection', (socket: TLSSocket) => this.admit(socket));
  }

  /** Installs a new anchor set if it differs from the current one. */
  apply(anchors: Certificate[]): void {
    const key = anchors.map((a) => a.sha256).sort().join(',');
    if (key === this.fingerprintKey) return;
    this.fingerprintKey = key;
    this.anchors = anchors;
    this.server.setSecureContext(secureContextOptions(this.identity, anchors));
    // New ticket keys: a session resumed from before the change would skip client verification.
    this.server.setTicketKeys(randomBytes(48));
    // Connections admitted under the old anchors must handshake again under the new ones.
    for (const socket of this.certificateSockets) socket.destroy();
    this.certificateSockets.clear();
    const names = anchors.map((a) => a.subjectText).join('; ') || 'none';
    this.log(`client-certificate trust anchors changed: ${names}`);
  }

  fingerprints(): string[] {
    return this.anchors.map((a) => a.sha256);
  }

  private admit(socket: TLSSocket): void {
    const peer = socket.getPeerX509Certificate();
    if (!peer) return;
    if (!socket.authorized) {
      const subject = peer.subject.replace(/\n/g, ', ');
      this.log(`refused TLS handshake from ${socket.remoteAddress}: client certificate "${subject}" (${String(socket.authorizationError)})`);
      socket.destroy();
      return;
    }
    this.certificateSockets.add(socket);
    socket.once('close', () => this.certificateSockets.delete(socket));
  }
}
