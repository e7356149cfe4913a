import { createServer, type Server } from 'node:http';
import { MidcertError } from './errors.js';

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Stops listening and drops open (keep-alive) scrape connections at once. */
  close(): Promise<void>;
}

/**
 * `GET /metrics` on `host:port` (the Prometheus text format 0.0.4, from `render`); anything else
 * is 404. A render that fails answers 500 with one line, so a scrape never hangs.
 */
export async function startMetricsServer(address: string, render: () => Promise<string>, contentType: string): Promise<MetricsServer> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(colon + 1));
  if (colon < 1 || !Number.isInteger(port) || port < 0 || port > 65_535) throw new MidcertError('CONFIG_INVALID', `metrics address "${address.slice(0, 80)}" is not host:port`);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    if (path !== '/metrics') return void res.writeHead(404).end();
    render().then(
      (text) => res.writeHead(200, { 'Content-Type': contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics unavailable: ${String((err as Error)?.message ?? err).split('\n')[0]}\n`),
    );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new MidcertError('CONFIG_INVALID', `cannot listen for metrics on ${address}: ${err.code ?? err.message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  return {
    port: typeof bound === 'object' && bound ? bound.port : port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
