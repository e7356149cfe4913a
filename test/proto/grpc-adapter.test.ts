import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { MidcertError } from '../../common/errors.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { AgentService, InstallCertificateRequestSchema, type InstallProgress } from '../../proto/gen/midcert/v1/agent_pb.js';
import {
  RpcError, channelTarget, createRpcClient, startRpcServer, toServiceDefinition,
  type CallContext, type Handlers, type RpcClient, type RpcServer, type ServerTls,
} from '../../proto/grpc-adapter.js';

type Agent = typeof AgentService;
const SERVER_NAME = 'mid01.agent.test';

/** Resolves when `signal` aborts; rejects after `ms` so a missing abort fails the test. */
function aborted(signal: AbortSignal, ms = 5000): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the handler signal never aborted')), ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function canListen(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer().once('error', () => resolve(false)).listen(0, host, () => probe.close(() => resolve(true)));
  });
}

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RpcError, `expected RpcError, got ${String(err)}`);
    assert.ok(err instanceof MidcertError);
    return err;
  }
  assert.fail('the call succeeded');
}

/** The fake agent: every handler records its context so tests can check what reached it. */
function fakeHandlers(seen: CallContext[], held: { signal?: AbortSignal }): Handlers<Agent> {
  const waitForAbort = async (ctx: CallContext): Promise<never> => {
    held.signal = ctx.signal;
    await aborted(ctx.signal, 30_000);
    throw new MidcertError('CANCELLED', 'aborted');
  };
  return {
    async getStatus(_req, ctx) { seen.push(ctx); return { midName: 'mid01', observedAt: '2025-01-01T00:00:00Z' }; },
    async *watchEvents(_req, ctx) {
      seen.push(ctx);
      held.signal = ctx.signal;
      yield { type: 'heartbeat', message: 'first' };
      await aborted(ctx.signal, 30_000);
    },
    async runPreflight(_req, ctx) { seen.push(ctx); return waitForAbort(ctx); },
    async getRenewal(req, ctx) { seen.push(ctx); return { renewalId: req.renewalId }; },
    async prepareRenewal(_req, ctx) { seen.push(ctx); throw new MidcertError('KEY_UNSUPPORTED', 'EC keys are not supported by the MID\nsecond line', { detail: 'keytool said no' }); },
    async *installCertificate(req, ctx) {
      seen.push(ctx);
      for (const step of ['lint', 'import', 'done']) yield { renewalId: req.renewalId, step, state: 'done' };
    },
    async rollback(_req, ctx) { seen.push(ctx); throw new Error('store password hunter2 rejected\n    at secretFunction (agent.ts:1:1)'); },
    async *enableMutualAuth(req, ctx) {
      seen.push(ctx);
      yield { renewalId: req.renewalId, step: 'lint', state: 'started' };
      throw new MidcertError('BUNDLE_INVALID', 'the bundle has no key');
    },
    async revertToBasicAuth(_req, ctx) { seen.push(ctx); return { ok: true }; },
    async restartService(_req, ctx) { seen.push(ctx); return waitForAbort(ctx); },
  };
}

describe('proto/grpc-adapter', () => {
  let ca: LabCa;
  let serverId: Identity;
  let clientId: Identity;
  let serverTls: ServerTls;
  let server: RpcServer;
  let client: RpcClient<Agent>;
  const seen: CallContext[] = [];
  const held: { signal?: AbortSignal } = {};
  const logs: string[] = [];
  const cleanup: Array<() => unknown> = [];

  before(async () => {
    ca = await createLabCa('Adapter Test');
    // Only a DNS name: dialling 127.0.0.1 works only through the servername override.
    serverId = await ca.issueIdentity('CN=mid01 agent', { ...PROFILES.server, sans: [`DNS:${SERVER_NAME}`] });
    clientId = await ca.issueIdentity('CN=midcert-controller', PROFILES.client);
    serverTls = { clientCaPem: ca.root.certPem, certChainPem: serverId.certPem + ca.intermediate.certPem, keyPem: serverId.keyPem };
    server = await startRpcServer({
      service: AgentService, handlers: fakeHandlers(seen, held), tls: serverTls, address: '127.0.0.1:0',
      authorize: () => 'operator', logger: (level, message) => logs.push(`${level}: ${message}`), shutdownGraceMs: 500,
    });
    client = makeClient(SERVER_NAME);
  });
  after(async () => {
    for (const fn of cleanup) await fn();
    client?.close();
    await server?.close();
  });
  beforeEach(() => { seen.length = 0; delete held.signal; logs.length = 0; });

  function makeClient(serverName: string): RpcClient<Agent> {
    return createRpcClient(AgentService, `127.0.0.1:${server.port}`, {
      tls: { caPem: ca.root.certPem, certChainPem: clientId.certPem + ca.intermediate.certPem, keyPem: clientId.keyPem, serverName },
      unaryDeadlineMs: 10_000,
    });
  }

  it('maps the service to grpc-js paths, stream flags and protobuf bytes', () => {
    const def = toServiceDefinition(AgentService);
    assert.equal(def.getStatus?.path, '/midcert.v1.AgentService/GetStatus');
    assert.equal(def.getStatus?.responseStream, false);
    assert.equal(def.installCertificate?.path, '/midcert.v1.AgentService/InstallCertificate');
    assert.equal(def.installCertificate?.responseStream, true);
    assert.equal(def.installCertificate?.requestStream, false);
    const init = { renewalId: 'r-1', certificatePem: 'PEM', chainPem: 'CHAIN' };
    const bytes = def.installCertificate!.requestSerialize(init);
    assert.deepEqual(new Uint8Array(bytes), toBinary(InstallCertificateRequestSchema, create(InstallCertificateRequestSchema, init)));
    const back = def.installCertificate!.requestDeserialize(bytes) as { renewalId: string; chainPem: string };
    assert.equal(back.renewalId, 'r-1');
    assert.equal(back.chainPem, 'CHAIN');
  });

  it('round-trips a unary call over mutual TLS, with the verified identity in the context', async () => {
    const status = await client.getStatus({});
    assert.equal(status.midName, 'mid01');
    assert.equal(status.observedAt, '2025-01-01T00:00:00Z');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.method, 'GetStatus');
    assert.equal(seen[0]?.role, 'operator');
    assert.equal(seen[0]?.identity?.commonName, 'midcert-controller');
    assert.equal(seen[0]?.identity?.sha256, clientId.cert.sha256);
    assert.equal(seen[0]?.signal.aborted, false);
  });

  it('streams every message of a server-streaming call in order', async () => {
    const got: InstallProgress[] = [];
    for await (const msg of client.installCertificate({ renewalId: 'r-42' })) got.push(msg);
    assert.deepEqual(got.map((m) => [m.renewalId, m.step, m.state]), [['r-42', 'lint', 'done'], ['r-42', 'import', 'done'], ['r-42', 'done', 'done']]);
  });

  it('carries a MidcertError code, one-line message and detail to the client', async () => {
    const err = await rejection(client.prepareRenewal({ renewalId: 'r-1' }));
    assert.equal(err.code, 'KEY_UNSUPPORTED');
    assert.equal(err.status, 'INVALID_ARGUMENT');
    assert.equal(err.message, 'EC keys are not supported by the MID');
    assert.equal(err.detail, 'keytool said no');
  });

  it('ends a stream with the error code after the messages sent before it', async () => {
    const got: string[] = [];
    const err = await rejection((async () => { for await (const m of client.enableMutualAuth({ renewalId: 'r-2' })) got.push(m.step); })());
    assert.deepEqual(got, ['lint']);
    assert.equal(err.code, 'BUNDLE_INVALID');
  });

  it('turns any other error into INTERNAL without leaking its text, and logs it locally', async () => {
    const err = await rejection(client.rollback({}));
    assert.equal(err.code, 'INTERNAL');
    assert.equal(err.status, 'INTERNAL');
    assert.doesNotMatch(err.message, /hunter2|secretFunction/);
    assert.ok(logs.some((l) => l.startsWith('error: rpc Rollback failed')), logs.join('\n'));
    assert.ok(logs.every((l) => !l.includes('secretFunction')), 'no stack trace in the log line');
  });

  it('cancels the handler when the client stops reading a stream', async () => {
    for await (const event of client.watchEvents({})) {
      assert.equal(event.message, 'first');
      break;
    }
    assert.ok(held.signal, 'the handler ran');
    await aborted(held.signal);
  });

  it('cancels the handler when the client aborts a unary call', async () => {
    const controller = new AbortController();
    const pending = rejection(client.restartService({}, { signal: controller.signal }));
    while (!held.signal) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    assert.equal((await pending).code, 'CANCELLED');
    await aborted(held.signal);
  });

  it('enforces the deadline on both ends', async () => {
    const started = Date.now();
    const err = await rejection(client.runPreflight({}, { deadlineMs: 300 }));
    assert.equal(err.code, 'DEADLINE_EXCEEDED');
    assert.ok(Date.now() - started < 5000);
    assert.ok(held.signal);
    await aborted(held.signal);
  });

  it('dials IP literals through grpc-js\'s IP resolver and names through DNS', () => {
    assert.equal(channelTarget('10.0.0.7:50051'), 'ipv4:10.0.0.7:50051');
    assert.equal(channelTarget('[fd00::7]:50051'), 'ipv6:[fd00::7]:50051');
    assert.equal(channelTarget('mid01.example.com:50051'), 'mid01.example.com:50051');
    assert.equal(channelTarget('unix:///run/midcert/agent.sock'), 'unix:///run/midcert/agent.sock');
    // Not host:port, or not an address: left for grpc-js to parse (and refuse) as before.
    assert.equal(channelTarget('10.0.0.7'), '10.0.0.7');
    assert.equal(channelTarget('999.0.0.1:1'), '999.0.0.1:1');
    assert.equal(channelTarget('[not-v6]:1'), '[not-v6]:1');
  });

  it('reaches the agent by IPv6 literal and by host name as well as by IPv4 literal', async () => {
    const targets = [`localhost:${server.port}`];
    // A container without an IPv6 loopback cannot serve on [::1]; the name is still tried.
    if (await canListen('::1')) {
      const v6 = await startRpcServer({
        service: AgentService, handlers: fakeHandlers(seen, held), tls: serverTls, address: '[::1]:0',
        authorize: () => 'operator', logger: () => undefined, shutdownGraceMs: 500,
      });
      cleanup.push(() => v6.close());
      targets.push(`[::1]:${v6.port}`);
    }
    for (const target of targets) {
      const c = createRpcClient(AgentService, target, {
        tls: { caPem: ca.root.certPem, certChainPem: clientId.certPem + ca.intermediate.certPem, keyPem: clientId.keyPem, serverName: SERVER_NAME },
        unaryDeadlineMs: 10_000,
      });
      cleanup.push(() => c.close());
      assert.equal((await c.getStatus({})).midName, 'mid01', target);
    }
  });

  it('verifies the server certificate against the expected server name', async () => {
    const bare = makeClient('other-mid.agent.test');
    cleanup.push(() => bare.close());
    const err = await rejection(bare.getStatus({}));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(seen.length, 0);
  });

  it('answers TOO_MANY_CALLS beyond maxConcurrentCalls', async () => {
    const busyHeld: { signal?: AbortSignal } = {};
    const busy = await startRpcServer({
      service: AgentService, handlers: fakeHandlers([], busyHeld), tls: serverTls, address: '127.0.0.1:0',
      authorize: () => 'operator', logger: () => undefined, maxConcurrentCalls: 1, shutdownGraceMs: 200,
    });
    const c = createRpcClient(AgentService, `127.0.0.1:${busy.port}`, {
      tls: { caPem: ca.root.certPem, certChainPem: clientId.certPem + ca.intermediate.certPem, keyPem: clientId.keyPem, serverName: SERVER_NAME },
    });
    cleanup.push(() => c.close(), () => busy.close());
    const controller = new AbortController();
    const first = c.restartService({}, { signal: controller.signal }).catch((e: unknown) => e);
    while (!busyHeld.signal) await new Promise((r) => setTimeout(r, 10));
    const err = await rejection(c.getStatus({}));
    assert.equal(err.code, 'TOO_MANY_CALLS');
    assert.equal(err.status, 'RESOURCE_EXHAUSTED');
    controller.abort();
    await first;
    await aborted(busyHeld.signal);
    // The slot is released once the handler settles.
    for (let i = 0; i < 50; i++) {
      const ok = await c.getStatus({}).then((s) => s.midName, () => undefined);
      if (ok === 'mid01') return;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail('the call slot was never released');
  });

  it('refuses plain-text TCP unless insecureDev, and a client with neither TLS nor plaintext', async () => {
    await assert.rejects(
      startRpcServer({ service: AgentService, handlers: fakeHandlers([], {}), address: '127.0.0.1:0', authorize: () => 'operator', logger: () => undefined }),
      (err: unknown) => err instanceof MidcertError && err.code === 'USAGE',
    );
    assert.throws(() => createRpcClient(AgentService, '127.0.0.1:1', {}), (err: unknown) => err instanceof MidcertError && err.code === 'USAGE');
  });
});
