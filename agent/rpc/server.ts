import { AgentService } from '../../proto/gen/midcert/v1/agent_pb.js';
import { startRpcServer, type Handlers, type Logger, type RpcServer, type ServerTls } from '../../proto/grpc-adapter.js';
import { createAccessPolicy, type AccessList, type AccessOptions } from './access.js';

export type AgentHandlers = Handlers<typeof AgentService>;

export interface AgentRpcOptions extends AccessOptions {
  handlers: AgentHandlers;
  access: AccessList;
  logger: Logger;
  /** `host:port` for the controller; port 0 picks a free port. */
  listen?: string;
  /** Required for `listen` unless `insecureDev`. */
  tls?: ServerTls;
  /** Plain-text TCP, no authentication, every caller an operator. Never in production. */
  insecureDev?: boolean;
  /** Host-local Unix socket (plain text, mode 0660, role `unixRole`, default reader). */
  socketPath?: string;
  maxMessageBytes?: number;
  maxConcurrentStreams?: number;
  maxConcurrentCalls?: number;
  shutdownGraceMs?: number;
}

/** Serves AgentService with mutual TLS and the access list (see access.ts for the identity rule). */
export function startAgentRpcServer(options: AgentRpcOptions): Promise<RpcServer> {
  return startRpcServer({
    service: AgentService,
    handlers: options.handlers,
    authorize: createAccessPolicy(options.access, { unixRole: options.unixRole }),
    logger: options.logger,
    address: options.listen,
    tls: options.tls,
    insecureDev: options.insecureDev,
    socketPath: options.socketPath,
    maxReceiveMessageBytes: options.maxMessageBytes,
    maxConcurrentStreams: options.maxConcurrentStreams,
    maxConcurrentCalls: options.maxConcurrentCalls,
    shutdownGraceMs: options.shutdownGraceMs,
  });
}
