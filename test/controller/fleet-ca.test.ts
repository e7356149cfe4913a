import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tls from 'node:tls';
import { MidcertError } from '../../common/errors.js';
import { startAgentRpcServer, type AgentHandlers } from '../../agent/rpc/server.js';
import { connectAgent } from '../../proto/agent-client.js';
import type { CallContext } from '../../proto/grpc-adapter.js';
import {
  CONTROLLER_CN, controllerIdentity, ensureFleetCa, fleetCaPem, fleetPaths, loadFleetCa, makeAgentKeyAndCsr, signAgentIdentity,
} from '../../controller/fleet-ca.js';
import { readCertificates } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { issueCertificatePem, PROFILES } from '../../pki/issue.js';
import { toPkcs8Pem } from '../../pki/keys.js';
import { run, runOk } from '../helpers/run.js';

const MIDCERT = resolve(import.meta.dirname, '../../bin/midcert');

const code = (expected: string) => (err: MidcertError): boolean => {
  assert.equal(err.code, expected, err.message);
  return true;
};

describe('controller/fleet-ca', () => {
  let dir: string;
  let other: string;
  const file = (name: string): string => join(dir, name);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-fleet-'));
    other = await mkdtemp(join(tmpdir(), 'midcert-fleet-other-'));
    await ensureFleetCa(dir);
    await ensureFleetCa(other);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(other, { recursive: true, force: true });
  });

  it('creates the root and the controller identity once, keys 0600 in a 0700 directory', async () => {
    const paths = fleetPaths(dir);
    assert.equal((await stat(paths.dir)).mode & 0o777, 0o700);
    assert.equal((await stat(paths.caKey)).mode & 0o777, 0o600);
    assert.equal((await stat(paths.controllerKey)).mode & 0o777, 0o600);
    const before = await readFile(paths.caCert, 'utf8');
    assert.deepEqual(await ensureFleetCa(dir), { created: [] });
    assert.equal(await readFile(paths.caCert, 'utf8'), before);
    const ca = await loadFleetCa(dir);
    assert.equal(ca.cert.basicConstraints?.ca, true);
    assert.match(ca.cert.subjectText, /^CN=midcert fleet CA [0-9a-f]{8},O=midcert$/);
    // Two data dirs get two different fleet CAs.
    assert.notEqual((await loadFleetCa(other)).cert.subjectText, ca.cert.subjectText);
  });

  it('issues the controller a client-only identity with the operator EKU that openssl verifies', async () => {
    const id = await controllerIdentity(dir);
    assert.equal(id.cert.subjectText, `CN=${CONTROLLER_CN},O=midcert`);
    assert.deepEqual(id.cert.extKeyUsage, ['clientAuth', 'midcertOperator']);
    assert.match((await runOk('openssl', ['x509', '-noout', '-ext', 'extendedKeyUsage'], { input: id.certPem })).stdout, /2\.25\.300178873001392453727799070494338662938/);
    assert.equal(id.cert.basicConstraints?.ca, false);
    assert.equal(id.caPem, await fleetCaPem(dir));
    await writeFile(file('controller-copy.pem'), id.certPem);
    await runOk('openssl', ['verify', '-CAfile', fleetPaths(dir).caCert, '-purpose', 'sslclient', file('controller-copy.pem')]);
    const asServer = await run('openssl', ['verify', '-CAfile', fleetPaths(dir).caCert, '-purpose', 'sslserver', file('controller-copy.pem')]);
    assert.notEqual(asServer.code, 0);
  });

  it("signs an agent's CSR as a server-only identity with its name and the given SANs", async () => {
    const { csrPem } = await makeAgentKeyAndCsr('mid01', { sans: ['DNS:mid02', 'IP:10.66.66.66'] });
    const pem = await signAgentIdentity(dir, csrPem, { name: 'mid01', sans: ['IP:127.0.0.1', 'dns:mid01.corp.example', 'DNS:mid01'], days: 90 });
    await writeFile(file('agent.pem'), pem);
    const ca = fleetPaths(dir).caCert;
    assert.match((await runOk('openssl', ['verify', '-CAfile', ca, file('agent.pem')])).stdout, /OK/);
    await runOk('openssl', ['verify', '-CAfile', ca, '-purpose', 'sslserver', file('agent.pem')]);
    // Issue 16: an agent identity is never a client certificate, so it cannot dial other agents.
    assert.notEqual((await run('openssl', ['verify', '-CAfile', ca, '-purpose', 'sslclient', file('agent.pem')])).code, 0);
    const text = (await runOk('openssl', ['x509', '-in', file('agent.pem'), '-noout', '-text'])).stdout;
    assert.match(text, /X509v3 Extended Key Usage: *\n *TLS Web Server Authentication\n/);
    assert.doesNotMatch(text, /Client Authentication|2\.25\./);
    assert.match(text, /DNS:mid01, IP Address:127\.0\.0\.1, DNS:mid01\.corp\.example/);
    // The SANs the CSR asked for are not copied: an agent cannot name another agent.
    assert.doesNotMatch(text, /mid02|10\.66\.66\.66/);
    const cert = readCertificates(Buffer.from(pem))[0];
    assert.equal(cert?.subjectText, 'CN=mid01,O=midcert fleet');
    assert.equal(cert?.basicConstraints?.ca, false);
    const days = ((cert?.notAfter.getTime() ?? 0) - Date.now()) / 86_400_000;
    assert.ok(days > 89 && days < 91, `${days}`);
    // The agent's other fleet does not trust it.
    assert.notEqual((await run('openssl', ['verify', '-CAfile', fleetPaths(other).caCert, file('agent.pem')])).code, 0);
  });

  it('refuses a CSR with a bad signature, a CA request, a weak key or a bad name', async () => {
    const { csrPem } = await makeAgentKeyAndCsr('mid01');
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    der[der.length - 5] = (der[der.length - 5] as number) ^ 0xff; // corrupt the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(signAgentIdentity(dir, tampered, { name: 'mid01' }), (err: MidcertError) => err.code === 'CSR_REFUSED' && /signature/.test(err.message));

    await runOk('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file('ca-req.key')]);
    await runOk('openssl', ['req', '-new', '-key', file('ca-req.key'), '-subj', '/CN=mid01', '-addext', 'basicConstraints=critical,CA:TRUE', '-out', file('ca-req.csr')]);
    await assert.rejects(signAgentIdentity(dir, await readFile(file('ca-req.csr'), 'utf8'), { name: 'mid01' }), (err: MidcertError) => err.code === 'CSR_REFUSED' && /CA:TRUE/.test(err.message));
    await runOk('openssl', ['req', '-new', '-key', file('ca-req.key'), '-subj', '/CN=mid01', '-addext', 'keyUsage=critical,keyCertSign,digitalSignature', '-out', file('ku-req.csr')]);
    await assert.rejects(signAgentIdentity(dir, await readFile(file('ku-req.csr'), 'utf8'), { name: 'mid01' }), (err: MidcertError) => err.code === 'CSR_REFUSED' && /keyCertSign/.test(err.message));
    // A CSR openssl made with ordinary extensions is accepted.
    await runOk('openssl', ['req', '-new', '-key', file('ca-req.key'), '-subj', '/CN=mid01', '-addext', 'basicConstraints=CA:FALSE', '-addext', 'keyUsage=digitalSignature', '-out', file('ok-req.csr')]);
    assert.match(await signAgentIdentity(dir, await readFile(file('ok-req.csr'), 'utf8'), { name: 'mid01' }), /BEGIN CERTIFICATE/);

    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    await assert.rejects(signAgentIdentity(dir, buildCsr(weak, { subject: 'CN=mid01' }), { name: 'mid01' }), (err: MidcertError) => err.code === 'CSR_REFUSED' && /RSA-1024/.test(err.message));
    const ed = generateKeyPairSync('ed25519').privateKey;
    await writeFile(file('ed.key'), toPkcs8Pem(ed));
    await runOk('openssl', ['req', '-new', '-key', file('ed.key'), '-subj', '/CN=mid01', '-out', file('ed.csr')]);
    await assert.rejects(signAgentIdentity(dir, await readFile(file('ed.csr'), 'utf8'), { name: 'mid01' }), code('CSR_REFUSED'));

    const good = (await makeAgentKeyAndCsr('mid01')).csrPem;
    await assert.rejects(signAgentIdentity(dir, good, { name: 'bad name' }), code('CSR_REFUSED'));
    await assert.rejects(signAgentIdentity(dir, good, { name: 'mid01', sans: ['email:a@b.c'] }), code('SAN_INVALID'));
    await assert.rejects(signAgentIdentity(dir, good, { name: 'mid01', days: 0 }), code('USAGE'));
    await assert.rejects(signAgentIdentity(dir, 'garbage', { name: 'mid01' }), code('CSR_REFUSED'));
  });

  // Issue 16 item 1: no way through `agent-identity sign` yields an identity an agent takes for an operator.
  it('refuses every way to mint an operator identity as an agent identity', async () => {
    const reserved = (err: MidcertError): boolean => err.code === 'CSR_REFUSED' && /reserved/.test(err.message);
    const { csrPem } = await makeAgentKeyAndCsr('x');
    for (const name of [CONTROLLER_CN, 'MIDCERT-CONTROLLER', 'Midcert-Controller', 'midcert-controller2', 'midcert-dashboard']) {
      await assert.rejects(signAgentIdentity(dir, csrPem, { name }), reserved, name);
    }
    for (const name of [' midcert-controller', 'midcert-controller.', 'CN=midcert-controller', 'mid01,CN=midcert-controller', 'midcert\u2010controller']) {
      await assert.rejects(signAgentIdentity(dir, csrPem, { name }), code('CSR_REFUSED'), name);
    }
    for (const san of ['DNS:midcert-controller', 'dns:MIDCERT-controller', 'DNS: midcert-controller']) {
      await assert.rejects(signAgentIdentity(dir, csrPem, { name: 'mid01', sans: [san] }), reserved, san);
    }
    // A CSR that asks for the operator's subject and clientAuth gets neither.
    const asked = await makeAgentKeyAndCsr(CONTROLLER_CN, { sans: [`DNS:${CONTROLLER_CN}`] });
    const cert = readCertificates(Buffer.from(await signAgentIdentity(dir, asked.csrPem, { name: 'mid01' })))[0];
    assert.equal(cert?.subjectText, 'CN=mid01,O=midcert fleet');
    assert.deepEqual(cert?.extKeyUsage, ['serverAuth']);
    assert.deepEqual(cert?.subjectAltNames, ['DNS:mid01']);
  });

  it('refuses the same through the CLI: midcert agent-identity sign', async () => {
    const data = await mkdtemp(join(tmpdir(), 'midcert-fleet-cli-'));
    try {
      await runOk(MIDCERT, ['--data-dir', data, 'init', '--json']);
      const { csrPem } = await makeAgentKeyAndCsr(CONTROLLER_CN);
      await writeFile(join(data, 'req.csr'), csrPem);
      for (const args of [['--name', 'midcert-controller'], ['--name', 'MidCert-Controller'], ['--name', 'mid01', '--san', 'DNS:midcert-controller']]) {
        const result = await run(MIDCERT, ['--data-dir', data, 'agent-identity', 'sign', '--csr', join(data, 'req.csr'), ...args, '--json']);
        assert.notEqual(result.code, 0, args.join(' '));
        assert.match(result.stderr + result.stdout, /CSR_REFUSED.*reserved/);
      }
      const ok = JSON.parse((await runOk(MIDCERT, ['--data-dir', data, 'agent-identity', 'sign', '--csr', join(data, 'req.csr'), '--name', 'mid01', '--json'])).stdout) as { certificatePem: string };
      assert.deepEqual(readCertificates(Buffer.from(ok.certificatePem))[0]?.extKeyUsage, ['serverAuth']);
    } finally {
      await rm(data, { recursive: true, force: true });
    }
  });

  it('re-issues a controller identity made before the operator EKU existed', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'midcert-fleet-old-'));
    try {
      await ensureFleetCa(scratch);
      const paths = fleetPaths(scratch);
      const ca = await loadFleetCa(scratch);
      const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
      const old = issueCertificatePem({
        subject: `CN=${CONTROLLER_CN},O=midcert`, publicKey: createPublicKey(key), profile: PROFILES.client,
        notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 400 * 86_400_000),
        issuer: { subject: ca.cert.subject, key: ca.key, publicKey: ca.cert.publicKey },
      });
      await writeFile(paths.controllerKey, toPkcs8Pem(key), { mode: 0o600 });
      await writeFile(paths.controllerCert, old);
      assert.deepEqual((await ensureFleetCa(scratch)).created, [paths.controllerKey, paths.controllerCert]);
      assert.deepEqual((await controllerIdentity(scratch)).cert.extKeyUsage, ['clientAuth', 'midcertOperator']);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('controller and agent complete a mutual TLS handshake, each verifying the other', async () => {
    const agentKey = await makeAgentKeyAndCsr('mid01');
    const agentCert = await signAgentIdentity(dir, agentKey.csrPem, { name: 'mid01' });
    const caPem = await fleetCaPem(dir);
    const controller = await controllerIdentity(dir);
    const seen: Array<{ authorized: boolean; cn: unknown }> = [];
    const server = tls.createServer({ key: agentKey.keyPem, cert: agentCert, ca: caPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      seen.push({ authorized: socket.authorized, cn: socket.getPeerCertificate().subject?.CN });
      socket.end('hello controller');
    });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const dial = (options: tls.ConnectionOptions): Promise<{ authorized: boolean; cn: unknown; data: string }> => new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, ...options }, () => {
          const cn = socket.getPeerCertificate().subject?.CN;
          let data = '';
          socket.on('data', (d: Buffer) => { data += d.toString(); });
          socket.on('end', () => resolve({ authorized: socket.authorized, cn, data }));
        });
        socket.on('error', reject);
      });
      const ok = await dial({ servername: 'mid01', key: controller.keyPem, cert: controller.certPem });
      assert.deepEqual(ok, { authorized: true, cn: 'mid01', data: 'hello controller' });
      assert.deepEqual(seen, [{ authorized: true, cn: CONTROLLER_CN }]);
      // The controller refuses an agent presenting another name…
      await assert.rejects(dial({ servername: 'mid02', key: controller.keyPem, cert: controller.certPem }), /mid02|altnames|Hostname/i);
      // …and the agent refuses a client identity from another fleet CA, or none at all. Under
      // TLS 1.3 the client may finish its side first and then see the alert or a bare close.
      const refused = (options: tls.ConnectionOptions): Promise<boolean> => dial(options).then((r) => r.data === '', () => true);
      const stranger = await controllerIdentity(other);
      assert.equal(await refused({ servername: 'mid01', key: stranger.keyPem, cert: stranger.certPem }), true);
      assert.equal(await refused({ servername: 'mid01' }), true);
      assert.equal(seen.length, 1);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('the fleet identities work with the real agent RPC server and controller client (gRPC over mTLS)', async () => {
    const agentKey = await makeAgentKeyAndCsr('mid07');
    const agentCert = await signAgentIdentity(dir, agentKey.csrPem, { name: 'mid07', sans: ['IP:127.0.0.1'] });
    const caPem = await fleetCaPem(dir);
    const controller = await controllerIdentity(dir);
    const calls: CallContext[] = [];
    // Only GetStatus matters here; every other method answers UNIMPLEMENTED.
    const getStatus = async (_req: unknown, ctx: CallContext): Promise<{ midName: string }> => { calls.push(ctx); return { midName: 'MID 07' }; };
    const handlers = new Proxy({}, {
      get: (_t, name) => (name === 'getStatus' ? getStatus : async () => { throw new MidcertError('UNIMPLEMENTED', String(name)); }),
    }) as AgentHandlers;
    const server = await startAgentRpcServer({
      handlers, access: { operators: [CONTROLLER_CN], readers: [] }, logger: () => undefined, listen: '127.0.0.1:0', shutdownGraceMs: 200,
      tls: { clientCaPem: caPem, certChainPem: agentCert, keyPem: agentKey.keyPem },
    });
    const client = connectAgent(`127.0.0.1:${server.port}`, { caPem, certChainPem: controller.certPem, keyPem: controller.keyPem, serverName: 'mid07' });
    try {
      assert.equal((await client.getStatus({})).midName, 'MID 07');
      assert.deepEqual(calls.map((c) => [c.role, c.identity?.commonName, c.identity?.sha256]), [['operator', CONTROLLER_CN, controller.cert.sha256]]);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('re-issues the controller identity near its expiry but never replaces the fleet CA', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'midcert-fleet-renew-'));
    try {
      await ensureFleetCa(scratch);
      const paths = fleetPaths(scratch);
      const caBefore = await readFile(paths.caCert, 'utf8');
      const idBefore = await readFile(paths.controllerCert, 'utf8');
      const later = new Date(Date.now() + 720 * 86_400_000);
      const again = await ensureFleetCa(scratch, { now: later });
      assert.deepEqual(again.created, [paths.controllerKey, paths.controllerCert]);
      assert.equal(await readFile(paths.caCert, 'utf8'), caBefore);
      assert.notEqual(await readFile(paths.controllerCert, 'utf8'), idBefore);
      // A CA key that does not match its certificate is reported, never silently replaced.
      await writeFile(paths.caKey, toPkcs8Pem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
      await assert.rejects(ensureFleetCa(scratch), code('FLEET_CA_MISSING'));
      await assert.rejects(signAgentIdentity(scratch, (await makeAgentKeyAndCsr('mid01')).csrPem, { name: 'mid01' }), code('FLEET_CA_MISSING'));
      assert.equal(await readFile(paths.caCert, 'utf8'), caBefore);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('reports a data dir without a fleet CA as FLEET_CA_MISSING', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'midcert-fleet-none-'));
    try {
      await assert.rejects(controllerIdentity(empty), code('FLEET_CA_MISSING'));
      await assert.rejects(fleetCaPem(empty), code('FLEET_CA_MISSING'));
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
