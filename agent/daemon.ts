import pino, { type Logger as PinoLogger } from 'pino';
import type { RpcServer } from '../proto/grpc-adapter.js';
import { readBoundedText } from '../common/bounded-read.js';
import { LIMITS } from '../common/limits.js';
import { VERSION } from '../common/version.js';
import type { AgentConfig } from './config.js';
import { EventHub } from './events.js';
import { hostEffectsFrom } from './host-effects.js';
import type { MetricsServer } from '../common/metrics-http.js';
import { createAgentMetrics, startAgentMetricsServer } from './metrics.js';
import { isChangingMid, RenewalEngine } from './renewal/engine.js';
import { agentHandlers } from './rpc/handlers.js';
import { startAgentRpcServer } from './rpc/server.js';
import { watchMidFiles } from './watcher.js';

export interface DaemonOptions {
  insecureDev?: boolean;
  logger?: PinoLogger;
  /**
   * How long close() lets work in flight end (default 1500 ms for RPCs, then as long again for an
   * install). An install still running then stays in the crash-safe journal and is finished or
   * rolled back by the next start (engine.resume), so close() never waits on a MID restart.
   */
  shutdownGraceMs?: number;
}

export interface RunningDaemon {
  port: number | undefined;
  /** The bound port of the optional `/metrics` (agent config metrics.listen), else undefined. */
  metricsPort?: number;
  close(): Promise<void>;
}

/** Secret-bearing keys pino must never print, wherever they appear. */
export const REDACT_PATHS = ['password', 'storepass', '*.password', '*.storepass', 'req.password', 'keyPem', '*.keyPem'];

export function createLogger(level: string): PinoLogger {
  return pino({ level, base: { service: 'midcert-agent', version: VERSION }, redact: { paths: REDACT_PATHS, censor: '****' }, timestamp: pino.stdTimeFunctions.isoTime });
}

/**
 * The agent daemon: finishes or rolls back an install a crash interrupted, watches the keystore
 * and config.xml, and serves AgentService (mTLS for the controller, a Unix socket for local tools).
 */
export async function startAgentDaemon(cfg: AgentConfig, options: DaemonOptions = {}): Promise<RunningDaemon> {
  const log = options.logger ?? createLogger(cfg.log.level);
  const effects = await hostEffectsFrom(cfg);
  const engine = new RenewalEngine(effects);
  const events = new EventHub();
  const resumed = await engine.resume((p) => log.info({ step: p.step, state: p.state }, 'resuming interrupted install'));
  if (resumed) log.warn({ renewalId: resumed.renewalId, ok: resumed.ok, failedStep: resumed.failedStep }, 'an install interrupted by a restart was resolved');
  const watcher = await watchMidFiles(effects.paths, (event) => {
    log.info({ event: event.type, path: event.path }, 'MID file changed');
    events.publish(event.type, event.path);
  });
  const tls = cfg.tls && {
    certChainPem: await readTlsFile('tls.cert', cfg.tls.cert),
    keyPem: await readTlsFile('tls.key', cfg.tls.key),
    clientCaPem: await readTlsFile('tls.clientCa', cfg.tls.clientCa),
  };
  const graceMs = options.shutdownGraceMs ?? 1500;
  let server: RpcServer;
  let metrics: MetricsServer | undefined;
  try {
    if (cfg.metrics?.listen) {
      metrics = await startAgentMetricsServer(cfg.metrics.listen, createAgentMetrics({ paths: effects.paths, alias: effects.alias, storepass: effects.storepass, engine }));
    }
    server = await startAgentRpcServer({
      handlers: agentHandlers({ cfg, effects, engine, events, startedAt: new Date(), log }),
      access: cfg.access,
      logger: (level, message) => log[level](message),
      listen: cfg.listen.address,
      tls,
      insecureDev: options.insecureDev,
      socketPath: cfg.listen.socket,
      maxMessageBytes: cfg.listen.maxMessageBytes,
      shutdownGraceMs: graceMs,
    });
  } catch (err) {
    await metrics?.close();
    await watcher.close();
    throw err;
  }
  events.publish('started', `midcert-agent ${VERSION}`);
  log.info({ port: server.port, socket: cfg.listen.socket, mid: effects.paths.home, metrics: cfg.metrics?.listen }, 'midcert-agent serving');
  return {
    port: server.port,
    metricsPort: metrics?.port,
    close: async () => {
      await metrics?.close();
      await server.close();
      const inFlight = await settled(engine, graceMs);
      if (inFlight) log.warn({ state: inFlight.state, renewalId: inFlight.renewalId }, 'stopping with an operation in flight; it is in the journal and the next start finishes or rolls it back');
      await watcher.close();
      log.info('midcert-agent stopped');
      log.flush?.();
    },
  };
}

/** Waits up to `ms` for the engine to stop changing the MID; what is still in flight then, else undefined. */
async function settled(engine: RenewalEngine, ms: number): Promise<{ state: string; renewalId: string } | undefined> {
  const until = Date.now() + ms;
  for (;;) {
    const s = await engine.state().catch(() => undefined);
    if (!s || !isChangingMid(s.state)) return undefined;
    if (Date.now() >= until) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A PEM file of the agent's TLS identity: a regular file within LIMITS.pemBytes (CONFIG_UNREADABLE otherwise). */
function readTlsFile(what: string, path: string): Promise<string> {
  return readBoundedText(path, { what, maxBytes: LIMITS.pemBytes, unreadableCode: 'CONFIG_UNREADABLE' });
}
