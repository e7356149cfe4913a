import { chmod, readFile, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { DEFAULT_STOREPASS } from './constants.js';
import {
  ControlRequestError, MAX_CONTROL_LINE_BYTES, parseControlRequest, unitName, type ControlRequest, type ControlResponse,
} from './control-protocol.js';
import type { LogFormat } from './mid-log.js';
import type { AliasConflictPolicy } from './mid-setup.js';
import { midTimings, SimulatedMid, type MidTimings } from './simulated-mid.js';
import type { MidStatus } from './unit-status.js';

/**
 * The MID runner: one Node process hosting many simulated MIDs (timers and one TLS agent each,
 * no process per MID), and the service manager stand-in that starts and stops them, reachable
 * in-process or over a Unix socket (control-protocol.ts).
 */

export interface MidRunnerOptions {
  /** PEM of the root(s) the MIDs trust for the instance's server certificate. */
  caPem: string;
  /** One factor on every vendor timing (poll 40 s, start 30 s); tests use a small one. Default 1. */
  timeScale?: number;
  /** Overrides of single timings (after scaling). */
  timings?: Partial<MidTimings>;
  /** The MIDs' log line format: 'old' (default) or 'tokyo' (vendor-facts §8). */
  logFormat?: LogFormat;
  /** Both names of an aliased config.xml parameter with different values: warn (default) or fail start. */
  aliasConflict?: AliasConflictPolicy;
}

export const DEFAULT_SOCKET_NAME = 'mid-runner.sock';

/** Where a runner's socket lives in a lab directory. */
export function runnerSocketPath(dir: string): string {
  return join(dir, DEFAULT_SOCKET_NAME);
}

export async function createMidRunner(options: { caFile: string } & Omit<MidRunnerOptions, 'caPem'>): Promise<MidRunner> {
  const { caFile, ...rest } = options;
  return new MidRunner({ ...rest, caPem: await readFile(caFile, 'utf8') });
}

export class MidRunner {
  private readonly mids = new Map<string, SimulatedMid>();
  private readonly timings: MidTimings;
  private server: Server | undefined;
  private socketPath: string | undefined;
  private readonly connections = new Set<Socket>();
  private shutdownHandler: (() => void) | undefined;

  constructor(private readonly options: MidRunnerOptions) {
    this.timings = { ...midTimings(options.timeScale ?? 1), ...options.timings };
  }

  /** Adds a MID (its install root holds agent/). Registering an existing unit name is an error. */
  register(unitText: string, home: string, storepass = DEFAULT_STOREPASS): MidStatus {
    const unit = unitName(unitText);
    if (!isAbsolute(home)) throw new ControlRequestError('BAD_REQUEST', 'a MID home must be an absolute path');
    if (this.mids.has(unit)) throw new ControlRequestError('UNIT_EXISTS', `Unit ${unit}.service is already registered`);
    const mid = new SimulatedMid({
      unit, home, storepass, caPem: this.options.caPem, timings: this.timings,
      ...(this.options.logFormat ? { logFormat: this.options.logFormat } : {}),
      ...(this.options.aliasConflict ? { aliasConflict: this.options.aliasConflict } : {}),
    });
    this.mids.set(unit, mid);
    return mid.status();
  }

  async unregister(unit: string): Promise<void> {
    await this.get(unit).stop();
    this.mids.delete(unit);
  }

  async start(unit: string): Promise<MidStatus> {
    const mid = this.get(unit);
    await mid.start();
    return mid.status();
  }

  async stop(unit: string): Promise<MidStatus> {
    const mid = this.get(unit);
    await mid.stop();
    return mid.status();
  }

  async restart(unit: string): Promise<MidStatus> {
    const mid = this.get(unit);
    await mid.restart();
    return mid.status();
  }

  status(unit: string): MidStatus {
    return this.get(unit).status();
  }

  list(): MidStatus[] {
    return [...this.mids.values()].map((m) => m.status());
  }

  /** The hosted MID object (tests use it to flush its log). */
  mid(unit: string): SimulatedMid {
    return this.get(unit);
  }

  private get(unitText: string): SimulatedMid {
    const unit = unitName(unitText);
    const mid = this.mids.get(unit);
    if (!mid) throw new ControlRequestError('UNIT_NOT_FOUND', `Unit ${unit}.service not found.`);
    return mid;
  }

  /** Serves the control protocol on a Unix socket (mode 0600). `onShutdown` runs on the shutdown verb. */
  async listen(socketPath: string, onShutdown?: () => void): Promise<void> {
    await unlink(socketPath).catch(() => undefined); // a stale socket from a killed runner
    const server = createServer((socket) => this.serveConnection(socket));
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(socketPath, () => { server.off('error', fail); done(); });
    });
    await chmod(socketPath, 0o600);
    this.server = server;
    this.socketPath = socketPath;
    this.shutdownHandler = onShutdown;
  }

  /** Stops every MID (each logs its shutdown) and the control server. */
  async close(): Promise<void> {
    await Promise.all([...this.mids.values()].map((m) => m.stop()));
    const server = this.server;
    this.server = undefined;
    if (server) {
      for (const socket of this.connections) socket.destroy();
      await new Promise<void>((done) => server.close(() => done()));
      if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
    }
  }

  private serveConnection(socket: Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => undefined);
    socket.setEncoding('utf8');
    let buffer = '';
    let queue = Promise.resolve();
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_CONTROL_LINE_BYTES && !buffer.includes('\n')) {
        socket.end(`${JSON.stringify(errorResponse(new ControlRequestError('BAD_REQUEST', 'request line too long')))}\n`);
        return;
      }
      for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        queue = queue.then(async () => {
          const response = await this.handleLine(line);
          if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
        });
      }
    });
  }

  private async handleLine(line: string): Promise<ControlResponse> {
    try {
      return await this.handle(parseControlRequest(line));
    } catch (err) {
      return errorResponse(err);
    }
  }

  private async handle(req: ControlRequest): Promise<ControlResponse> {
    switch (req.verb) {
      case 'register': return { ok: true, status: this.register(req.unit, req.home, req.storepass) };
      case 'unregister': await this.unregister(req.unit); return { ok: true };
      case 'start': return { ok: true, status: await this.start(req.unit) };
      case 'stop': return { ok: true, status: await this.stop(req.unit) };
      case 'restart': return { ok: true, status: await this.restart(req.unit) };
      case 'status':
      case 'is-active': return { ok: true, status: this.status(req.unit) };
      case 'list': return { ok: true, units: this.list() };
      case 'shutdown':
        setImmediate(() => this.shutdownHandler?.());
        return { ok: true };
    }
  }
}

function errorResponse(err: unknown): ControlResponse {
  if (err instanceof ControlRequestError) return { ok: false, error: { code: err.code, message: err.message } };
  return { ok: false, error: { code: 'INTERNAL', message: (err as Error)?.message?.split('\n')[0] ?? String(err) } };
}
