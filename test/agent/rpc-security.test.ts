import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { createAccessPolicy } from '../../agent/rpc/access.js';
import { startAgentRpcServer, type AgentHandlers, type AgentRpcOptions } from '../../agent/rpc/server.js';
import { connectAgent, type AgentClient } from '../../proto/agent-client.js';
import type { CallContext, PeerIdentity, RpcServer } from '../../proto/grpc-adapter.js';

const SERVER_NAME = 'mid01.agent.test';

async function failure(promise: Promise<unknown>): Promise<MidcertError & { status?: string }> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MidcertError, `expected MidcertError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call succeeded');
}

async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n += 1;
  return n;
}

/** Fake agent: GetStatus answers, InstallCertificate streams 3 steps, PrepareRenewal refuses the key. */
function fakeAgent(calls: CallContext[]): AgentHandlers {
  const ok = async (_req: unknown, ctx: CallContext) => { calls.push(ctx); return { ok: true }; };
  return {
    async getStatus(_req, ctx) { calls.push(ctx); return { midName: 'mid01' }; },
    async *watchEvents(_req, ctx) { calls.push(ctx); yield { type: 'heartbeat' }; },
    async runPreflight(_req, ctx) { calls.push(ctx); return { ok: true }; },
    async getRenewal(req, ctx) { calls.push(ctx); return { renewalId: req.renewalId }; },
    async prepareRenewal(_req, ctx) { calls.push(ctx); throw new MidcertError('KEY_UNSUPPORTED', 'only RSA keys are supported'); },
    async *installCertificate(req, ctx) {
      calls.push(ctx);
      for (const step of ['lint', 'import', 'done']) yield { renewalId: req.renewalId, step, state: 'done' };
    },
    rollback: ok,
    async *enableMutualAuth(_req, ctx) { calls.push(ctx); yield { step: 'done' }; },
    revertToBasicAuth: ok,
    restartService: ok,
  };
}

/**
 * A raw TLS connection attempt. A served client gets the server's HTTP/2 SETTINGS frame ('data');
 * a refused one gets an alert (its error code) or is closed without a byte ('closed').
 */
function handshake(port: number, ca: string, identity?: { cert: string; key: string }): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: SERVER_NAME, ALPNProtocols: ['h2'], ...identity });
    socket.once('data', () => { socket.destroy(); resolve('data'); });
    socket.on('error', (err: NodeJS.ErrnoException) => { socket.destroy(); resolve(err.code ?? err.message); });
    socket.on('close', () => resolve('closed'));
  });
}

describe('agent/rpc security', () => {
  let ca: LabCa;
  let dir: string;
  let operatorId: Identity;
  let readerId: Identity;
  let intruderId: Identity;
  let strangerId: Identity;
  let agentProfileId: Identity;
  let clientOnlyOperatorId: Identity;
  let base: Omit<AgentRpcOptions, 'handlers'>;
  let server: RpcServer;
  const calls: CallContext[] = [];
  const cleanup: Array<() => unknown> = [];

  const client = (id: Identity): AgentClient => {
    const c = connectAgent(`127.0.0.1:${server.port}`, {
      caPem: ca.root.certPem, certChainPem: id.certPem + ca.intermediate.certPem, keyPem: id.keyPem, serverName: SERVER_NAME,
    });
    cleanup.push(() => c.close());
    return c;
  };
  const local = (path: string): AgentClient => {
    const c = connectAgent(`unix://${path}`);
    cleanup.push(() => c.close());
    return c;
  };

  before(async () => {
    ca = await createLabCa('Agent Test');
    dir = await mkdtemp(join(tmpdir(), 'midcert-rpc-'));
    const serverId = await ca.issueIdentity('CN=mid01 agent', { ...PROFILES.server, sans: [`DNS:${SERVER_NAME}`] });
    operatorId = await ca.issueIdentity('CN=midcert-controller,O=Acme', PROFILES.operator);
    readerId = await ca.issueIdentity('CN=midcert-dashboard,O=Acme', PROFILES.client);
    intruderId = await ca.issueIdentity('CN=someone-else,O=Acme', PROFILES.client);
    // Same CN as the operator, but from a CA the agent does not trust.
    strangerId = await (await createLabCa('Stranger')).issueIdentity('CN=midcert-controller,O=Acme', PROFILES.client);
    // What `midcert agent-identity sign` issues (server-only), wearing the operator's CN.
    agentProfileId = await ca.issueIdentity('CN=midcert-controller,O=Acme', { ...PROFILES.server, sans: ['DNS:mid02'] });
    // The operator's CN from the trusted CA with clientAuth, but without midcert's operator EKU.
    clientOnlyOperatorId = await ca.issueIdentity('CN=midcert-controller,O=Acme', PROFILES.client);
    base = {
      access: { operators: ['midcert-controller'], readers: ['midcert-dashboard'] },
      logger: () => undefined,
      listen: '127.0.0.1:0',
      tls: { clientCaPem: ca.root.certPem, certChainPem: serverId.certPem + ca.intermediate.certPem, keyPem: serverId.keyPem },
      maxMessageBytes: 64 * 1024,
      shutdownGraceMs: 500,
    };
    server = await startAgentRpcServer({ ...base, handlers: fakeAgent(calls), socketPath: join(dir, 'agent.sock') });
    cleanup.push(() => server.close());
  });
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => { calls.length = 0; });

  it('lets an allow-listed operator call read and mutating RPCs, with its identity', async () => {
    const c = client(operatorId);
    assert.equal((await c.getStatus({})).midName, 'mid01');
    assert.equal((await failure(c.prepareRenewal({ renewalId: 'r-1' }))).code, 'KEY_UNSUPPORTED');
    assert.equal(await drain(c.installCertificate({ renewalId: 'r-1' })), 3);
    assert.deepEqual(calls.map((x) => [x.method, x.role, x.identity?.commonName]), [
      ['GetStatus', 'operator', 'midcert-controller'],
      ['PrepareRenewal', 'operator', 'midcert-controller'],
      ['InstallCertificate', 'operator', 'midcert-controller'],
    ]);
    assert.equal(calls[0]?.identity?.subject, 'CN=midcert-controller,O=Acme');
  });

  it('refuses a client without a certificate at the TLS handshake', async () => {
    assert.equal(await handshake(server.port!, ca.root.certPem, { cert: operatorId.certPem + ca.intermediate.certPem, key: operatorId.keyPem }), 'data');
    assert.equal(await handshake(server.port!, ca.root.certPem), 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    assert.equal(calls.length, 0);
  });

  it('refuses a client certificate from another CA, even with an allow-listed CN', async () => {
    assert.equal(await handshake(server.port!, ca.root.certPem, { cert: strangerId.certPem, key: strangerId.keyPem }), 'closed');
    const err = await failure(client(strangerId).getStatus({}));
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(calls.length, 0);
  });

  it('denies a trusted certificate whose CN is on neither list', async () => {
    const c = client(intruderId);
    const err = await failure(c.getStatus({}));
    assert.equal(err.code, 'PERMISSION_DENIED');
    assert.equal(err.status, 'PERMISSION_DENIED');
    assert.match(err.message, /someone-else/);
    assert.equal((await failure(drain(c.watchEvents({})))).code, 'PERMISSION_DENIED');
    assert.equal(calls.length, 0);
  });

  // Issue 16 item 1: a certificate of the agent profile (serverAuth only) cannot call any method.
  it('refuses a certificate of the agent profile at the handshake, whatever its CN', async () => {
    const c = client(agentProfileId);
    const attempts = [c.getStatus({}), drain(c.watchEvents({})), c.runPreflight({}), c.prepareRenewal({}), drain(c.installCertificate({ renewalId: 'r-1' })),
      c.rollback({}), drain(c.enableMutualAuth({})), c.revertToBasicAuth({}), c.restartService({})];
    for (const attempt of attempts) assert.ok(['UNAVAILABLE', 'PERMISSION_DENIED'].includes((await failure(attempt)).code));
    assert.notEqual(await handshake(server.port!, ca.root.certPem, { cert: agentProfileId.certPem + ca.intermediate.certPem, key: agentProfileId.keyPem }), 'data');
    assert.equal(calls.length, 0, 'no handler ran');
  });

  it('does not make an operator of a client certificate that only has the operator CN', async () => {
    const c = client(clientOnlyOperatorId);
    const err = await failure(c.restartService({}));
    assert.equal(err.code, 'PERMISSION_DENIED');
    assert.match(err.message, /operator EKU/);
    for (const attempt of [c.getStatus({}), c.prepareRenewal({}), c.rollback({}), c.revertToBasicAuth({})]) {
      assert.equal((await failure(attempt)).code, 'PERMISSION_DENIED');
    }
    assert.equal(calls.length, 0);
  });

  // The server remembers identities by certificate DER: two certificates with one CN stay apart.
  it('keeps apart two certificates with the same CN, call after call', async () => {
    const operator = client(operatorId);
    const lookalike = client(clientOnlyOperatorId);
    for (let round = 0; round < 3; round++) {
      assert.equal((await operator.restartService({})).ok, true);
      assert.equal((await failure(lookalike.restartService({}))).code, 'PERMISSION_DENIED');
    }
    assert.deepEqual(calls.map((x) => [x.method, x.role]), Array.from({ length: 3 }, () => ['RestartService', 'operator']));
  });

  it('lets a reader read but not prepare, install or roll back', async () => {
    const c = client(readerId);
    assert.equal((await c.getStatus({})).midName, 'mid01');
    assert.equal((await c.runPreflight({})).ok, true);
    assert.equal(await drain(c.watchEvents({})), 1);
    for (const attempt of [c.prepareRenewal({}), drain(c.installCertificate({ renewalId: 'r-1' })), c.rollback({}), c.restartService({})]) {
      assert.equal((await failure(attempt)).code, 'PERMISSION_DENIED');
    }
    assert.deepEqual(calls.map((x) => [x.method, x.role]), [['GetStatus', 'reader'], ['RunPreflight', 'reader'], ['WatchEvents', 'reader']]);
  });

  it('rejects a request over the message bound with RESOURCE_EXHAUSTED', async () => {
    const c = client(operatorId);
    assert.equal(await drain(c.installCertificate({ renewalId: 'small', certificatePem: 'x'.repeat(32 * 1024) })), 3);
    const err = await failure(drain(c.installCertificate({ renewalId: 'big', certificatePem: 'x'.repeat(100 * 1024) })));
    assert.equal(err.code, 'MESSAGE_TOO_LARGE');
    assert.equal(err.status, 'RESOURCE_EXHAUSTED');
    assert.deepEqual(calls.map((x) => x.method), ['InstallCertificate']);
  });

  it('serves the Unix socket with mode 0660, reader role by default', async () => {
    const path = join(dir, 'agent.sock');
    const info = await lstat(path);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o660);
    const c = local(path);
    assert.equal((await c.getStatus({})).midName, 'mid01');
    assert.equal((await failure(c.prepareRenewal({}))).code, 'PERMISSION_DENIED');
    assert.deepEqual(calls.map((x) => [x.method, x.role, x.identity]), [['GetStatus', 'reader', undefined]]);
  });

  it('replaces a stale socket, gives the configured unixRole, and leaves non-sockets alone', async () => {
    const stale = join(dir, 'stale.sock');
    // A listener killed without cleanup leaves its socket file behind, as a crashed agent would.
    spawnSync(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", stale]);
    assert.ok((await lstat(stale)).isSocket());
    const own: CallContext[] = [];
    const unixOnly = await startAgentRpcServer({ ...base, listen: undefined, tls: undefined, handlers: fakeAgent(own), socketPath: stale, unixRole: 'operator' });
    cleanup.push(() => unixOnly.close());
    assert.equal(unixOnly.port, undefined);
    assert.equal((await failure(local(stale).prepareRenewal({}))).code, 'KEY_UNSUPPORTED');
    assert.deepEqual(own.map((x) => [x.method, x.role]), [['PrepareRenewal', 'operator']]);
    await unixOnly.close();
    await assert.rejects(lstat(stale), 'close removes the socket file');

    // A live socket belongs to another agent; a regular file is not ours to delete.
    const refuse = (socketPath: string) => assert.rejects(
      startAgentRpcServer({ ...base, listen: undefined, handlers: fakeAgent([]), socketPath }),
      (err: unknown) => err instanceof MidcertError && err.code === 'LISTEN_FAILED',
    );
    const live = await startAgentRpcServer({ ...base, listen: undefined, handlers: fakeAgent([]), socketPath: stale });
    cleanup.push(() => live.close());
    await refuse(stale);
    assert.equal((await local(stale).getStatus({})).midName, 'mid01', 'the live agent keeps its socket');
    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    await refuse(file);
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  it('serves plain text only with insecureDev, warning loudly and treating callers as operators', async () => {
    await assert.rejects(
      startAgentRpcServer({ ...base, tls: undefined, handlers: fakeAgent([]) }),
      (err: unknown) => err instanceof MidcertError && err.code === 'USAGE',
    );
    const warnings: string[] = [];
    const own: CallContext[] = [];
    const dev = await startAgentRpcServer({ ...base, tls: undefined, insecureDev: true, handlers: fakeAgent(own), logger: (level, msg) => { if (level === 'warn') warnings.push(msg); } });
    cleanup.push(() => dev.close());
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /INSECURE.*plain text/);
    const c = connectAgent(`127.0.0.1:${dev.port}`, { insecureDev: true });
    cleanup.push(() => c.close());
    assert.equal((await failure(c.prepareRenewal({}))).code, 'KEY_UNSUPPORTED');
    assert.deepEqual(own.map((x) => [x.method, x.role, x.identity]), [['PrepareRenewal', 'operator', undefined]]);
    // The mTLS agent does not speak plain text.
    const plain = connectAgent(`127.0.0.1:${server.port}`, { insecureDev: true });
    cleanup.push(() => plain.close());
    assert.equal((await failure(plain.getStatus({}, { deadlineMs: 3000 }))).code, 'UNAVAILABLE');
  });

  it('applies the identity rule: exactly one CN, exact match, operator wins over reader', () => {
    const policy = createAccessPolicy({ operators: ['ops', 'both'], readers: ['viewer', 'both'] });
    const peer = (commonName: string | undefined, extKeyUsage = ['clientAuth', 'midcertOperator']): { transport: 'mtls'; identity: PeerIdentity } =>
      ({ transport: 'mtls', identity: { commonName, subject: `CN=${commonName}`, sha256: '00', extKeyUsage } });
    assert.equal(policy(peer('ops'), 'Rollback'), 'operator');
    assert.equal(policy(peer('both'), 'InstallCertificate'), 'operator');
    assert.equal(policy(peer('viewer'), 'WatchEvents'), 'reader');
    const denied = (fn: () => unknown, code = 'PERMISSION_DENIED') => assert.throws(fn, (e: unknown) => e instanceof MidcertError && e.code === code);
    denied(() => policy(peer('viewer'), 'EnableMutualAuth'));
    denied(() => policy(peer('OPS'), 'GetStatus'));
    denied(() => policy(peer(undefined), 'GetStatus'));
    denied(() => policy({ transport: 'mtls', identity: undefined }, 'GetStatus'), 'UNAUTHENTICATED');
    // More than a CN: no clientAuth → nothing; operator CN without the operator EKU → no operator role.
    denied(() => policy(peer('ops', ['serverAuth', 'midcertOperator']), 'GetStatus'));
    denied(() => policy(peer('ops', ['clientAuth']), 'Rollback'));
    denied(() => policy(peer('ops', ['clientAuth', 'anyExtendedKeyUsage']), 'Rollback'));
    assert.equal(policy(peer('both', ['clientAuth']), 'GetStatus'), 'reader', 'on both lists without the EKU: a reader only');
    denied(() => policy(peer('both', ['clientAuth']), 'Rollback'));
    denied(() => policy({ transport: 'unix' }, 'RevertToBasicAuth'));
    assert.equal(policy({ transport: 'insecure-dev' }, 'RevertToBasicAuth'), 'operator');
  });
});
