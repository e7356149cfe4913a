import pino, { type Logger as PinoLogger } from 'pino';
import type { RpcServer } from '../proto/grpc-adapter.js';
import { readBoundedText } from '../common/bounded-read.js';
import { LIMITS } from '../common/limits.js';
import { VERSION } from '../common/version.js';
import type { AgentConfig } from './config.js';
import { EventHub } from './events.js';
import { hostEffectsFrom } from './host-effects.js';
import { RenewalEngine } from './renewal/engine.js';
import { agentHandlers } from './rpc/handlers.js';
import { startAgentRpcServer } from './rpc/server.js';
import { watchMidFiles } from './watcher.js';

export interface DaemonOptions {
  insecureDev?: boolean;
  logger?: PinoLogger;
}

export interface RunningDaemon {
  port: number | undefined;
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
  let server: RpcServer;
  try {
    server = await startAgentRpcServer({
      handlers: agentHandlers({ cfg, effects, engine, events, startedAt: new Date(), log }),
      access: cfg.access,
      logger: (level, message) => log[level](message),
      listen: cfg.listen.address,
      tls,
      insecureDev: options.insecureDev,
      socketPath: cfg.listen.socket,
      maxMessageBytes: cfg.listen.maxMessageBytes,
    });
  } catch (err) {
    await watcher.close();
    throw err;
  }
  events.publish('started', `midcert-agent ${VERSION}`);
  log.info({ port: server.port, socket: cfg.listen.socket, mid: effects.paths.home }, 'midcert-agent serving');
  return {
    port: server.port,
    close: async () => {
      await server.close();
      await watcher.close();
      log.info('midcert-agent stopped');
      log.flush?.();
    },
  };
}

/** A PEM file of the agent's TLS identity: a regular file within LIMITS.pemBytes (CONFIG_UNREADABLE otherwise). */
function readTlsFile(what: string, path: string): Promise<string> {
  return readBoundedText(path, { what, maxBytes: LIMITS.pemBytes, unreadableCode: 'CONFIG_UNREADABLE' });
}
