import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { createCaAdapter } from '../../controller/ca/index.js';
import { createLabCa, saveLabCa, type LabCa } from '../../lab/lab-ca.js';
import { assertIssued, assertOutcome, caConfig, freePort, newCsr, tempDir } from './ca-fixtures.js';

/**
 * Against the real cfssl (Debian golang-cfssl) started here: a `client` profile with clientAuth,
 * a default profile without it (cfssl signs unknown profiles with the default), and a profile
 * that needs an auth key (so cfssl itself refuses).
 */
const CFSSL_CONFIG = {
  signing: {
    default: { usages: ['digital signature', 'key encipherment', 'server auth'], expiry: '8760h' },
    profiles: {
      client: { usages: ['digital signature', 'key encipherment', 'client auth'], expiry: '720h' },
      authed: { usages: ['client auth'], expiry: '720h', auth_key: 'k1' },
    },
  },
  auth_keys: { k1: { type: 'standard', key: '0123456789ABCDEF0123456789ABCDEF' } },
};

function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (child.exitCode !== null) return reject(new Error(`cfssl exited ${child.exitCode}: ${log()}`));
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`cfssl did not listen: ${log()}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

describe('controller/ca cfssl: against a real `cfssl serve`', function () {
  this.timeout(60_000);
  let dir: string;
  let ca: LabCa;
  let cfssl: ChildProcess | undefined;
  let url: string;
  let output = '';

  before(async () => {
    dir = await tempDir('ca-cfssl');
    ca = await createLabCa('cfssl Test');
    await saveLabCa(ca, join(dir, 'ca'));
    await writeFile(join(dir, 'cfssl.json'), JSON.stringify(CFSSL_CONFIG));
    const port = await freePort();
    cfssl = spawn('cfssl', ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', join(dir, 'ca', 'intermediate.pem'),
      '-ca-key', join(dir, 'ca', 'intermediate.key'), '-config', join(dir, 'cfssl.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    cfssl.stdout?.on('data', (c: Buffer) => { output += c.toString(); });
    cfssl.stderr?.on('data', (c: Buffer) => { output += c.toString(); });
    await waitForPort(port, cfssl, () => output.slice(-2000));
    url = `http://127.0.0.1:${port}`;
  });

  after(async () => {
    if (cfssl && cfssl.exitCode === null) {
      const exited = new Promise((resolve) => cfssl?.once('exit', resolve));
      cfssl.kill('SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('issues with profile "client" and takes the chain from chainFile', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'cfssl', url, profile: 'client', chainFile: join(dir, 'ca', 'chain.pem') }), { dataDir: dir });
    assert.equal(adapter.type, 'cfssl');
    const { key, csr } = await newCsr('CN=mid02,O=Acme');
    const { leaf, chain } = assertIssued(await adapter.submit(csr, { subject: 'CN=mid02,O=Acme' }), key, ca.root.cert.sha256);
    assert.equal(leaf.issuerText, ca.intermediate.cert.subjectText);
    assert.deepEqual(chain.map((c) => c.sha256), [ca.intermediate.cert.sha256, ca.root.cert.sha256]);
    // 720h is the client profile's expiry, not the default's 8760h: cfssl really used "client".
    assert.ok(Math.abs((leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 3_600_000 - 720) < 1);
    assert.match(output, /POST \/api\/v1\/cfssl\/sign" 200/);
  });

  it('catches the silent fallback of an unknown profile to the default (no clientAuth) as rejected', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'cfssl', url, profile: 'midclient-typo', chainFile: join(dir, 'ca', 'chain.pem') }), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /without Client Authentication \(EKU: serverAuth; profile midclient-typo/);
  });

  it('reports what cfssl says when it refuses to sign', async () => {
    const adapter = await createCaAdapter(caConfig({ type: 'cfssl', url, profile: 'authed', chainFile: join(dir, 'ca', 'chain.pem') }), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /cfssl at http:\/\/127\.0\.0\.1:\d+ refused to sign: authentication required \(code 400\)/);
  });

  it('rejects a leaf that does not chain to the configured chainFile', async () => {
    const stranger = await createLabCa('Stranger');
    await writeFile(join(dir, 'stranger-chain.pem'), stranger.chainPem);
    const adapter = await createCaAdapter(caConfig({ type: 'cfssl', url, profile: 'client', chainFile: join(dir, 'stranger-chain.pem') }), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'rejected', /issuer of CN=mid01.* is not in ca\.chainFile/);
  });

  it('needs a chainFile (cfssl returns only the leaf): CONFIG_INVALID at creation', async () => {
    await assert.rejects(createCaAdapter(caConfig({ type: 'cfssl', url, profile: 'client' }), { dataDir: dir }),
      (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /chainFile is required/.test(err.message));
    await assert.rejects(createCaAdapter(caConfig({ type: 'cfssl', url, chainFile: join(dir, 'missing.pem') }), { dataDir: dir }),
      (err: Error & { code?: string }) => err.code === 'CONFIG_UNREADABLE');
  });

  it('bounds time and size: a CA that never answers is unreachable, an endless answer is rejected', async () => {
    const sockets: Socket[] = [];
    const silent = createNetServer((socket) => { sockets.push(socket); });
    const flood = createHttpServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(Buffer.alloc(2 * 1024 * 1024, 0x20));
    });
    const listen = (server: NetServer): Promise<number> => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
    try {
      const { csr } = await newCsr();
      const chainFile = join(dir, 'ca', 'chain.pem');
      const slow = await createCaAdapter(caConfig({ type: 'cfssl', url: `http://127.0.0.1:${await listen(silent)}`, chainFile, timeoutSeconds: 1 }), { dataDir: dir });
      assertOutcome(await slow.submit(csr, { subject: 'CN=mid01' }), 'unreachable', /did not answer within 1 s/);
      const big = await createCaAdapter(caConfig({ type: 'cfssl', url: `http://127.0.0.1:${await listen(flood)}`, chainFile }), { dataDir: dir });
      assertOutcome(await big.submit(csr, { subject: 'CN=mid01' }), 'rejected', /answer larger than \d+ bytes/);
    } finally {
      for (const socket of sockets) socket.destroy();
      flood.closeAllConnections();
      await Promise.all([new Promise((r) => silent.close(r)), new Promise((r) => flood.close(r))]);
    }
  });

  it('is unreachable when nothing listens', async () => {
    const closed = await freePort();
    const adapter = await createCaAdapter(caConfig({ type: 'cfssl', url: `http://127.0.0.1:${closed}`, profile: 'client', chainFile: join(dir, 'ca', 'chain.pem') }), { dataDir: dir });
    const { csr } = await newCsr();
    assertOutcome(await adapter.submit(csr, { subject: 'CN=mid01' }), 'unreachable', /ECONNREFUSED/);
  });
});
