import { createHash } from 'node:crypto';
/**
 * The one module that imports @grpc/grpc-js. protobuf-es generates service descriptors but no
 * grpc-js service definitions, so this maps each method's schemas to toBinary/fromBinary and
 * exposes typed, grpc-js-free helpers: `startRpcServer` (handlers are async functions and async
 * iterables) and `createRpcClient` (Promises and AsyncIterables). Errors cross the wire as a gRPC
 * status plus trailing metadata `midcert-error-code`, and come back as MidcertError (RpcError).
 */
import { chmod, lstat, rm } from 'node:fs/promises';
import { connect, isIPv4, isIPv6 } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { MidcertError, isMidcertError, type ErrorCode } from '../common/errors.js';
import { parseCertificate } from '../pki/certificate.js';

type AnyService = GenService<GenServiceMethods>;
type Msg<D> = D extends DescMessage ? MessageShape<D> : never;
type Init<D> = D extends DescMessage ? MessageInitShape<D> : never;

export type Role = 'operator' | 'reader';
export type Logger = (level: 'info' | 'warn' | 'error', message: string) => void;

/** Who is calling, from the verified client certificate. */
export interface PeerIdentity {
  /** The subject's CN; undefined when the subject has none or more than one. */
  commonName: string | undefined;
  /** RFC 4514 subject text, for audit lines. */
  subject: string;
  /** SHA-256 of the certificate DER, lower-case hex. */
  sha256: string;
  /** Extended key usages by name (`clientAuth`, `midcertOperator`, or the dotted OID); empty when absent. */
  extKeyUsage: readonly string[];
}

export interface CallContext {
  identity: PeerIdentity | undefined;
  role: Role;
  /** Aborted when the client cancels, the deadline passes or the server shuts down. */
  signal: AbortSignal;
  /** The proto method name, e.g. "GetStatus". */
  method: string;
}

/** How the call arrived; `authorize` turns it into a role or throws PERMISSION_DENIED. */
export type Peer =
  | { transport: 'mtls'; identity: PeerIdentity | undefined }
  | { transport: 'insecure-dev' }
  | { transport: 'unix' };
export type Authorize = (peer: Peer, method: string) => Role;

type HandlerFor<M> = M extends { methodKind: 'unary'; input: infer I; output: infer O }
  ? (req: Msg<I>, ctx: CallContext) => Promise<Init<O>>
  : M extends { methodKind: 'server_streaming'; input: infer I; output: infer O }
    ? (req: Msg<I>, ctx: CallContext) => AsyncIterable<Init<O>>
    : never;
export type Handlers<S extends AnyService> = { [K in keyof S['method']]: HandlerFor<S['method'][K]> };

export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
}
type ClientMethod<M> = M extends { methodKind: 'unary'; input: infer I; output: infer O }
  ? (req: Init<I>, options?: CallOptions) => Promise<Msg<O>>
  : M extends { methodKind: 'server_streaming'; input: infer I; output: infer O }
    ? (req: Init<I>, options?: CallOptions) => AsyncIterable<Msg<O>>
    : never;
export type RpcClient<S extends AnyService> = { [K in keyof S['method']]: ClientMethod<S['method'][K]> } & { close(): void };

/** A MidcertError that came over the wire; `status` is the gRPC status name (e.g. "RESOURCE_EXHAUSTED"). */
export class RpcError extends MidcertError {
  readonly status: string;
  constructor(code: ErrorCode, message: string, status: string, detail?: string) {
    super(code, message, detail === undefined ? {} : { detail });
    this.status = status;
  }
}

export const ERROR_CODE_KEY = 'midcert-error-code';
const ERROR_DETAIL_KEY = 'midcert-error-detail-bin';
const MAX_DETAIL_BYTES = 8 * 1024;
const S = grpc.status;

/** gRPC status for a MidcertError code. Unlisted codes are deliberate refusals: FAILED_PRECONDITION. */
const STATUS_OF: Partial<Record<ErrorCode, grpc.status>> = {
  USAGE: S.INVALID_ARGUMENT, INPUT_TOO_LARGE: S.INVALID_ARGUMENT, PEM_MALFORMED: S.INVALID_ARGUMENT,
  CERT_MALFORMED: S.INVALID_ARGUMENT, KEY_MALFORMED: S.INVALID_ARGUMENT, KEY_PASSWORD: S.INVALID_ARGUMENT,
  KEY_UNSUPPORTED: S.INVALID_ARGUMENT, SUBJECT_INVALID: S.INVALID_ARGUMENT, SAN_INVALID: S.INVALID_ARGUMENT,
  PKCS12_MALFORMED: S.INVALID_ARGUMENT, PKCS12_PASSWORD: S.INVALID_ARGUMENT, PKCS12_CONTENT: S.INVALID_ARGUMENT,
  CHAIN_INVALID: S.INVALID_ARGUMENT, BUNDLE_INVALID: S.INVALID_ARGUMENT,
  PERMISSION_DENIED: S.PERMISSION_DENIED, UNAUTHENTICATED: S.UNAUTHENTICATED, UNAVAILABLE: S.UNAVAILABLE,
  DEADLINE_EXCEEDED: S.DEADLINE_EXCEEDED, CANCELLED: S.CANCELLED, UNIMPLEMENTED: S.UNIMPLEMENTED,
  MESSAGE_TOO_LARGE: S.RESOURCE_EXHAUSTED, TOO_MANY_CALLS: S.RESOURCE_EXHAUSTED,
  OUTPUT_FAILED: S.INTERNAL, INTERNAL: S.INTERNAL,
};
/** Our code for a status that arrived without `midcert-error-code` (grpc-js itself, or a non-midcert peer). */
const CODE_OF: Partial<Record<grpc.status, ErrorCode>> = {
  [S.PERMISSION_DENIED]: 'PERMISSION_DENIED', [S.UNAUTHENTICATED]: 'UNAUTHENTICATED', [S.UNAVAILABLE]: 'UNAVAILABLE',
  [S.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED', [S.CANCELLED]: 'CANCELLED', [S.UNIMPLEMENTED]: 'UNIMPLEMENTED',
  [S.RESOURCE_EXHAUSTED]: 'MESSAGE_TOO_LARGE', [S.INVALID_ARGUMENT]: 'USAGE',
};

function oneLine(text: string): string {
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Server side: anything thrown → a status object grpc-js sends. Non-midcert errors say nothing. */
function toStatus(thrown: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  const err = osErrorAsMidcert(thrown);
  if (!isMidcertError(err)) {
    metadata.set(ERROR_CODE_KEY, 'INTERNAL');
    return { code: S.INTERNAL, details: 'internal error in the agent', metadata };
  }
  metadata.set(ERROR_CODE_KEY, err.code);
  if (err.detail) metadata.set(ERROR_DETAIL_KEY, Buffer.from(err.detail, 'utf8').subarray(0, MAX_DETAIL_BYTES));
  return { code: STATUS_OF[err.code] ?? S.FAILED_PRECONDITION, details: oneLine(err.message), metadata };
}

/** A full disk or a permission problem on the host is not a bug: say what failed, with the I/O code. */
function osErrorAsMidcert(err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  if (isMidcertError(err) || typeof e?.code !== 'string' || !/^E[A-Z]+$/.test(e.code)) return err;
  return new MidcertError('OUTPUT_FAILED', `${e.syscall ?? 'I/O'} ${e.path ?? ''} failed on the agent host: ${e.code}`.replace(/\s+/g, ' '));
}

/** Client side: a grpc-js ServiceError → RpcError with the server's stable code when it sent one. */
function fromServiceError(err: unknown): MidcertError {
  if (isMidcertError(err)) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== 'number') return new MidcertError('INTERNAL', `rpc failed: ${oneLine(String((err as Error)?.message ?? err))}`);
  const sent = e.metadata?.get(ERROR_CODE_KEY)[0];
  const detail = e.metadata?.get(ERROR_DETAIL_KEY)[0];
  // A newer agent may send a code this controller does not know yet; showing it beats relabelling it.
  const code = typeof sent === 'string' && /^[A-Z][A-Z0-9_]{1,63}$/.test(sent) ? (sent as ErrorCode) : (CODE_OF[e.code] ?? 'INTERNAL');
  return new RpcError(code, oneLine(e.details ?? ''), S[e.code] ?? String(e.code), Buffer.isBuffer(detail) ? detail.toString('utf8') : undefined);
}

function methodDefinition(m: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  const encode = (schema: DescMessage) => (msg: unknown) => Buffer.from(toBinary(schema, create(schema, msg as MessageInitShape<DescMessage>)));
  return {
    path: `/${m.parent.typeName}/${m.name}`,
    originalName: m.localName,
    requestStream: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
    responseStream: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
    requestSerialize: encode(m.input),
    requestDeserialize: (bytes: Buffer) => fromBinary(m.input, bytes),
    responseSerialize: encode(m.output),
    responseDeserialize: (bytes: Buffer) => fromBinary(m.output, bytes),
  };
}

/** The grpc-js ServiceDefinition of a protobuf-es service (keys are the methods' local names). */
export function toServiceDefinition(service: AnyService): grpc.ServiceDefinition {
  return Object.fromEntries(service.methods.map((m) => [m.localName, methodDefinition(m)]));
}

type SurfaceCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

/** Client certificates seen lately, by DER: a controller's calls all carry the same one, and parsing it costs more than the call. */
const identities = new Map<string, PeerIdentity>();
const MAX_IDENTITIES = 64;

function peerIdentity(call: SurfaceCall): PeerIdentity | undefined {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  if (!raw) return undefined;
  const key = raw.toString('base64');
  let identity = identities.get(key);
  if (!identity) {
    const cert = parseCertificate(raw);
    const cns = cert.subject.flat().filter((a) => a.type === 'CN').map((a) => a.value);
    identity = Object.freeze({ commonName: cns.length === 1 ? cns[0] : undefined, subject: cert.subjectText, sha256: cert.sha256, extKeyUsage: Object.freeze([...(cert.extKeyUsage ?? [])]) });
    if (identities.size >= MAX_IDENTITIES) identities.clear();
    identities.set(key, identity);
  }
  return identity;
}

export interface ServerTls {
  /** CA certificate(s) that client certificates must chain to. */
  clientCaPem: string | Buffer;
  /** Server leaf followed by its intermediates. */
  certChainPem: string | Buffer;
  keyPem: string | Buffer;
}

export interface RpcServerOptions<S extends AnyService> {
  service: S;
  handlers: Handlers<S>;
  authorize: Authorize;
  logger: Logger;
  /** TCP listener, `host:port` (port 0 = ephemeral). Mutual TLS unless `insecureDev`. */
  address?: string;
  tls?: ServerTls;
  /** Plain-text TCP for development only: loudly logged; `authorize` sees transport 'insecure-dev'. */
  insecureDev?: boolean;
  /** Host-local Unix socket, plain text, chmod 0660 after bind; `authorize` sees transport 'unix'. */
  socketPath?: string;
  maxReceiveMessageBytes?: number;
  /** HTTP/2 streams per connection. */
  maxConcurrentStreams?: number;
  /** Calls in flight across all connections; more get TOO_MANY_CALLS (RESOURCE_EXHAUSTED). */
  maxConcurrentCalls?: number;
  shutdownGraceMs?: number;
}

export interface RpcServer {
  /** Bound TCP port; undefined without a TCP listener. */
  port: number | undefined;
  close(): Promise<void>;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export async function startRpcServer<S extends AnyService>(options: RpcServerOptions<S>): Promise<RpcServer> {
  if (options.address === undefined && options.socketPath === undefined) {
    throw new MidcertError('USAGE', 'the RPC server needs a TCP address, a Unix socket path, or both');
  }
  if (options.address !== undefined && !options.tls && !options.insecureDev) {
    throw new MidcertError('USAGE', 'TCP listening needs TLS material (or insecureDev for development)');
  }
  const grpcOptions: grpc.ServerOptions = {
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': options.maxConcurrentStreams ?? 32,
    // Nothing reads channelz; its per-connection bookkeeping is pure cost.
    'grpc.enable_channelz': 0,
  };
  const inFlight = { count: 0, max: options.maxConcurrentCalls ?? 128 };
  const servers: grpc.Server[] = [];
  const closeAll = () => shutdown(servers, options.shutdownGraceMs ?? 5000);
  try {
    let port: number | undefined;
    if (options.address !== undefined) {
      const server = new grpc.Server(grpcOptions);
      servers.push(server);
      const tls = options.tls;
      const transport: Peer['transport'] = tls ? 'mtls' : 'insecure-dev';
      server.addService(toServiceDefinition(options.service), implementation(options, transport, inFlight));
      const credentials = tls
        ? grpc.ServerCredentials.createSsl(Buffer.from(tls.clientCaPem), [{ cert_chain: Buffer.from(tls.certChainPem), private_key: Buffer.from(tls.keyPem) }], true)
        : grpc.ServerCredentials.createInsecure();
      if (!tls) options.logger('warn', `INSECURE: gRPC on ${options.address} is plain text with NO authentication; every caller is an operator. Development only.`);
      port = await bind(server, options.address, credentials);
    }
    if (options.socketPath !== undefined) {
      // A Windows named pipe (\\.\pipe\name) has no file to chmod or clean up: it vanishes with
      // its server, and libuv creates it with FILE_FLAG_FIRST_PIPE_INSTANCE (a second server, or a
      // squatter, makes bind fail) and the default pipe DACL: full control for LocalSystem,
      // Administrators and the creating account, read-only for Everyone, which cannot send a
      // request. See docs/windows.md.
      const pipe = isWindowsPipe(options.socketPath);
      if (!pipe) await removeStaleSocket(options.socketPath);
      const server = new grpc.Server(grpcOptions);
      servers.push(server);
      server.addService(toServiceDefinition(options.service), implementation(options, 'unix', inFlight));
      await bind(server, `unix:${options.socketPath}`, grpc.ServerCredentials.createInsecure());
      // Bind creates the socket with the process umask; narrow it to owner + group right away.
      if (!pipe) await chmod(options.socketPath, 0o660);
    }
    return { port, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new MidcertError('LISTEN_FAILED', `cannot listen on ${address}: ${oneLine(err.message)}`, { cause: err }));
      else resolve(port);
    });
  });
}

/** `\\.\pipe\name` (or `//./pipe/name`): a Windows named pipe, not a Unix socket file. */
export function isWindowsPipe(path: string): boolean {
  return /^[\\/]{2}[.?][\\/]pipe[\\/]/i.test(path);
}

/** A socket file left by a crashed agent blocks bind; a live one means another agent runs. */
async function removeStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return;
  if (!info.isSocket()) throw new MidcertError('LISTEN_FAILED', `${path} exists and is not a socket; not removing it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new MidcertError('LISTEN_FAILED', `${path} is in use by a running process`);
  await rm(path, { force: true });
}

async function shutdown(servers: grpc.Server[], graceMs: number): Promise<void> {
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  })));
}

type RawHandler = (req: unknown, ctx: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

function implementation<S extends AnyService>(options: RpcServerOptions<S>, transport: Peer['transport'], inFlight: { count: number; max: number }): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  const handlers = options.handlers as unknown as Record<string, RawHandler | undefined>;
  for (const m of options.service.methods) {
    const handler = handlers[m.localName];
    if (!handler) throw new MidcertError('USAGE', `no handler for ${m.name}`);
    if (m.methodKind !== 'unary' && m.methodKind !== 'server_streaming') throw new MidcertError('USAGE', `${m.name}: only unary and server-streaming methods are supported`);
    /** Access check, in-flight accounting and the abort signal around one call's `body`. */
    const serve = (call: SurfaceCall, body: (ctx: CallContext) => Promise<void>, onError: (status: Partial<grpc.StatusObject>, aborted: boolean) => void): void => {
      const controller = new AbortController();
      const cancel = () => controller.abort(new MidcertError('CANCELLED', 'the call was cancelled'));
      if (call.cancelled) cancel();
      else call.on('cancelled', cancel);
      let counted = false;
      void (async () => {
        // Access first: a refused caller learns nothing about load and takes no slot.
        const identity = transport === 'mtls' ? peerIdentity(call) : undefined;
        const role = options.authorize(transport === 'mtls' ? { transport, identity } : { transport }, m.name);
        if (inFlight.count >= inFlight.max) throw new MidcertError('TOO_MANY_CALLS', 'too many calls in flight; retry later');
        inFlight.count += 1;
        counted = true;
        await body({ identity, role, signal: controller.signal, method: m.name });
      })().catch((err: unknown) => {
        if (!isMidcertError(err)) options.logger('error', `rpc ${m.name} failed: ${oneLine(err instanceof Error ? err.message : String(err))}`);
        onError(toStatus(err), controller.signal.aborted);
      }).finally(() => {
        // grpc-js may emit 'cancelled' while closing a finished stream; that must not abort anything.
        call.off('cancelled', cancel);
        if (counted) inFlight.count -= 1;
      });
    };
    if (m.methodKind === 'unary') {
      impl[m.localName] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => serve(call,
        async (ctx) => callback(null, await (handler(call.request, ctx) as Promise<unknown>)),
        (status) => callback(status));
    } else {
      impl[m.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => serve(call, async (ctx) => {
        for await (const msg of handler(call.request, ctx) as AsyncIterable<unknown>) {
          if (ctx.signal.aborted) break; // leaving the loop calls the iterator's return()
          if (!call.write(msg)) await waitDrain(call, ctx.signal);
        }
        if (!ctx.signal.aborted) call.end();
      }, (status, aborted) => {
        if (!aborted) call.emit('error', status);
      });
    }
  }
  return impl;
}

function waitDrain(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { call.off('drain', done); signal.removeEventListener('abort', done); resolve(); };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export interface ClientTls {
  /** CA certificate(s) the server certificate must chain to. */
  caPem: string | Buffer;
  /** Client leaf followed by its intermediates. */
  certChainPem: string | Buffer;
  keyPem: string | Buffer;
  /** Name to verify the server certificate against (and send as SNI) when dialling by IP. */
  serverName?: string;
}

export interface RpcClientOptions {
  /** Mutual TLS; omit only with `plaintext` (Unix sockets, insecure development agents). */
  tls?: ClientTls;
  plaintext?: boolean;
  /** Default deadlines; a call's own `deadlineMs` wins. Streams have none unless set. */
  unaryDeadlineMs?: number;
  streamDeadlineMs?: number;
  maxReceiveMessageBytes?: number;
}

const credentialCache = new Map<string, grpc.ChannelCredentials>();

/**
 * One ChannelCredentials (one parsed TLS context) per identity: a controller dialling hundreds of
 * agents with the same client certificate should not parse it hundreds of times.
 */
function sslCredentials(tls: ClientTls): grpc.ChannelCredentials {
  const key = createHash('sha256').update(String(tls.caPem)).update('\0').update(String(tls.keyPem)).update('\0').update(String(tls.certChainPem)).digest('hex');
  let credentials = credentialCache.get(key);
  if (!credentials) {
    if (credentialCache.size > 16) credentialCache.clear();
    credentials = grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certChainPem));
    credentialCache.set(key, credentials);
  }
  return credentials;
}

/**
 * The grpc-js target for `host:port`: an IP literal goes to grpc-js's `ipv4:`/`ipv6:` resolver,
 * since its default DNS resolver opens a c-ares channel for every client, even for an address
 * that needs no lookup (agents are mostly dialled by IP, one client per agent). Names, and
 * `unix:` targets, are passed as they are.
 */
export function channelTarget(target: string): string {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(target);
  if (v6 && isIPv6(v6[1] as string)) return `ipv6:${target}`;
  const v4 = /^([^:]+):(\d+)$/.exec(target);
  if (v4 && isIPv4(v4[1] as string)) return `ipv4:${target}`;
  return target;
}

/** A typed client: `target` is `host:port` or `unix:///absolute/path`. */
export function createRpcClient<S extends AnyService>(service: S, target: string, options: RpcClientOptions): RpcClient<S> {
  if (!options.tls && !options.plaintext) throw new MidcertError('USAGE', 'an RPC client needs TLS material, or plaintext for a Unix socket');
  const tls = options.tls;
  const credentials = tls ? sslCredentials(tls) : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    'grpc.enable_channelz': 0,
    // Each client owns its connection: closing it then does not sweep a process-wide pool, a
    // sweep whose cost grew with the number of agents a fleet status had dialled.
    'grpc.use_local_subchannel_pool': 1,
    ...(tls?.serverName ? { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName } : {}),
  };
  const client = new grpc.Client(channelTarget(target), credentials, channelOptions);
  const out: Record<string, unknown> = { close: () => client.close() };
  for (const m of service.methods) {
    const def = methodDefinition(m);
    const callOptions = (own: CallOptions | undefined, fallback: number | undefined): grpc.CallOptions => {
      const ms = own?.deadlineMs ?? fallback;
      return ms === undefined ? {} : { deadline: Date.now() + ms };
    };
    if (m.methodKind === 'unary') {
      out[m.localName] = (req: unknown, opts?: CallOptions) => new Promise((resolve, reject) => {
        const signal = opts?.signal;
        const cancel = () => call.cancel();
        const call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, new grpc.Metadata(),
          callOptions(opts, options.unaryDeadlineMs), (err, res) => {
            signal?.removeEventListener('abort', cancel);
            if (err) reject(fromServiceError(err));
            else resolve(res);
          });
        if (signal?.aborted) cancel();
        else signal?.addEventListener('abort', cancel, { once: true });
      });
    } else if (m.methodKind === 'server_streaming') {
      out[m.localName] = (req: unknown, opts?: CallOptions) => streamCall(() => client.makeServerStreamRequest(def.path,
        def.requestSerialize, def.responseDeserialize, req, new grpc.Metadata(), callOptions(opts, options.streamDeadlineMs)), opts?.signal);
    }
  }
  return out as RpcClient<S>;
}

/** Starts the call on first iteration; breaking out of the loop cancels it on the server. */
async function* streamCall(start: () => grpc.ClientReadableStream<unknown>, signal: AbortSignal | undefined): AsyncGenerator<unknown> {
  const call = start();
  let finished = false;
  const cancel = () => call.cancel();
  if (signal?.aborted) cancel();
  else signal?.addEventListener('abort', cancel, { once: true });
  try {
    for await (const msg of call) yield msg;
    finished = true;
  } catch (err) {
    finished = true;
    throw fromServiceError(err);
  } finally {
    signal?.removeEventListener('abort', cancel);
    if (!finished) call.cancel();
  }
}
