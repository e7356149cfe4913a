import type { IncomingHttpHeaders } from 'node:http';
import { request, type Agent } from 'node:https';
import { isProxyError } from '../proxy.js';

/** One HTTPS exchange with the instance, bounded in time and in response size. No retries here. */
export interface Exchange {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: Buffer;
  agent: Agent;
  timeoutMs: number;
  maxResponseBytes: number;
}

export type ExchangeOutcome =
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: Buffer; startedAt: number; endedAt: number }
  | {
    kind: 'failure';
    /**
     * tls: the instance's certificate is not trusted (never retried); too-large: the body cap was
     * hit; proxy: the proxy refused the tunnel (407 or another refusal; never retried). A proxy
     * that cannot be reached, or cannot reach the instance, is a `network` failure.
     */
    reason: 'timeout' | 'network' | 'tls' | 'too-large' | 'proxy';
    /**
     * True once the request may have reached the server: the TLS session was up (fresh connection)
     * or the socket was a reused keep-alive one. A failure before that point cannot have changed
     * anything on the instance, so even a POST may be tried again.
     */
    sent: boolean;
    code: string | undefined;
    message: string;
  };

/** Node/OpenSSL codes that mean "we do not trust who answered": retrying cannot help. */
const TLS_TRUST = /^(?:UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH)/;

export function exchange(ex: Exchange): Promise<ExchangeOutcome> {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    let sent = false;
    let settled = false;
    const finish = (outcome: ExchangeOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const fail = (reason: 'timeout' | 'network' | 'tls' | 'too-large' | 'proxy', code: string | undefined, message: string): void =>
      finish({ kind: 'failure', reason, sent, code, message });

    const req = request(ex.url, { method: ex.method, headers: ex.headers, agent: ex.agent });
    const timer = setTimeout(() => {
      fail('timeout', 'ETIMEDOUT', `no complete answer within ${ex.timeoutMs} ms`);
      req.destroy();
    }, ex.timeoutMs);

    req.on('socket', (socket) => {
      // A reused keep-alive socket is already connected: bytes go out at once.
      if (req.reusedSocket) sent = true;
      else socket.once('secureConnect', () => { sent = true; });
    });
    req.on('response', (res) => {
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > ex.maxResponseBytes) {
        fail('too-large', undefined, `the response declares ${declared} bytes; the limit is ${ex.maxResponseBytes}`);
        res.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > ex.maxResponseBytes) {
          fail('too-large', undefined, `the response exceeds ${ex.maxResponseBytes} bytes`);
          res.destroy();
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => finish({
        kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks, size), startedAt, endedAt: Date.now(),
      }));
      res.on('error', (err: NodeJS.ErrnoException) => fail('network', err.code, err.message));
      res.on('aborted', () => fail('network', 'ECONNRESET', 'the connection closed mid-response'));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (isProxyError(err)) {
        fail(err.kind === 'unreachable' ? 'network' : 'proxy', err.code, err.message);
        return;
      }
      const trust = err.code !== undefined && TLS_TRUST.test(err.code);
      fail(trust ? 'tls' : 'network', err.code, err.message);
    });
    req.end(ex.body);
  });
}
