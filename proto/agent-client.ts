import { MidcertError } from '../common/errors.js';
import { AgentService } from './gen/midcert/v1/agent_pb.js';
import { createRpcClient, type RpcClient } from './grpc-adapter.js';

export type AgentClient = RpcClient<typeof AgentService>;

export interface AgentClientOptions {
  /** CA certificate(s) the agent's server certificate must chain to. */
  caPem?: string | Buffer;
  /** The controller's client certificate (leaf + intermediates) and key. */
  certChainPem?: string | Buffer;
  keyPem?: string | Buffer;
  /** Name the agent's certificate must carry; agents are usually dialled by IP. */
  serverName?: string;
  /** Plain-text TCP to an agent started with insecureDev. Development only. */
  insecureDev?: boolean;
  /** Default deadline of unary calls (30 s). Streams (installs, watches) have none unless given. */
  unaryDeadlineMs?: number;
  streamDeadlineMs?: number;
  maxMessageBytes?: number;
}

/**
 * A typed AgentService client. `address` is `host:port` (mutual TLS) or `unix:///path` (the
 * agent's host-local socket, plain text). Unary methods return Promises, streaming methods
 * AsyncIterables; failures are MidcertError (RpcError) with the agent's stable code.
 */
export function connectAgent(address: string, options: AgentClientOptions = {}): AgentClient {
  const local = address.startsWith('unix:');
  const common = {
    unaryDeadlineMs: options.unaryDeadlineMs ?? 30_000,
    streamDeadlineMs: options.streamDeadlineMs,
    maxReceiveMessageBytes: options.maxMessageBytes,
  };
  if (local || options.insecureDev) return createRpcClient(AgentService, address, { ...common, plaintext: true });
  const { caPem, certChainPem, keyPem } = options;
  if (!caPem || !certChainPem || !keyPem) {
    throw new MidcertError('USAGE', `connecting to agent ${address} needs a CA, a client certificate and its key`);
  }
  return createRpcClient(AgentService, address, { ...common, tls: { caPem, certChainPem, keyPem, serverName: options.serverName } });
}
