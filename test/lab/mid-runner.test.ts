import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parameterValue, parseConfigXml } from '../../lab/mid/config-xml.js';
import { midctl } from '../../lab/mid/ctl-main.js';
import { createMidHost, runManageCertificates, type MidHost } from '../../lab/mid/host.js';
import { MidRunner } from '../../lab/mid/runner.js';
import { PROFILES } from '../../pki/issue.js';
import { fingerprintOf, makeMidPki, startTestInstance, type MidPki, type TestInstance } from './mid-fixtures.js';

const RUNNER_MAIN = fileURLToPath(new URL('../../lab/mid/runner-main.ts', import.meta.url));
const CTL_MAIN = fileURLToPath(new URL('../../lab/mid/ctl-main.ts', import.meta.url));
/** Vendor timings × 0.0025: mid.poll.time 40 s → 100 ms, MID start 30 s → 75 ms. */
const TIME_SCALE = 0.0025;
const HEARTBEAT_MS = 40_000 * TIME_SCALE;

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('lab MID runner (simulated MID processes)', function () {
  this.timeout(30_000);
  let root: string;
  let pki: MidPki;
  let foreign: MidPki;
  let instance: TestInstance;
  let runner: MidRunner;
  const hosts: Record<string, MidHost> = {};

  const logOf = async (unit: string): Promise<string> => {
    await runner.mid(unit).flushLog();
    return readFile((hosts[unit] as MidHost).logPath, 'utf8');
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mid-run-'));
    [pki, foreign] = await Promise.all([makeMidPki('mid01'), makeMidPki('intruder')]);
    instance = await startTestInstance(pki.ca);
    instance.published.add(fingerprintOf(pki.leaf.certPem));
    const common = { instanceUrl: instance.url, auth: 'mutual' as const };
    const made = await Promise.all([
      createMidHost({ home: join(root, 'good'), name: 'mid01', ...common, bundlePem: pki.bundle }),
      createMidHost({ home: join(root, 'foreign'), name: 'mid-foreign', ...common, bundlePem: foreign.bundle }),
      createMidHost({ home: join(root, 'nokey'), name: 'mid-nokey', ...common }),
      createMidHost({ home: join(root, 'basic'), name: 'mid-basic', instanceUrl: instance.url, auth: { username: 'svc', password: 'Sup3r-secret' } }),
    ]);
    [hosts.good, hosts.foreign, hosts.nokey, hosts.basic] = made;
    runner = new MidRunner({ caPem: pki.ca.root.certPem, timeScale: TIME_SCALE });
    for (const [unit, host] of Object.entries(hosts)) runner.register(unit, host.home);
  });

  after(async () => {
    await runner?.close();
    await instance?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('starts a MID that heartbeats over mTLS, is Up, logs in the MID style and saves mid_sys_id', async () => {
    const status = await runner.start('good');
    assert.equal(status.state, 'active');
    assert.equal(status.auth, 'mutual');
    assert.equal(status.leaf?.subject, 'CN=mid01,O=midcert Lab');
    await until('3 heartbeats', () => (instance.heartbeats.get('mid01') ?? 0) >= 3);
    assert.equal(runner.status('good').instanceStatus, 'Up');
    const log = await logOf('good');
    assert.match(log, /^\d\d\/\d\d\/\d\d \d\d:\d\d:\d\d \(\d{3}\) MIDServer Starting MID server: mid01$/m);
    assert.match(log, /StartupSequencer MID Server started/);
    assert.match(log, /HeartbeatThread Heartbeat accepted by the instance: MID Server mid01 is Up/);
    await until('mid_sys_id saved', async () => parameterValue(parseConfigXml(await readFile(hosts.good!.configPath, 'utf8')), 'mid_sys_id') !== '');
    assert.doesNotMatch(log, /PRIVATE KEY|changeit/, 'nothing secret in the log');
  });

  it('stops heartbeating when stopped, and logs the shutdown', async () => {
    await runner.stop('good');
    assert.equal(runner.status('good').state, 'inactive');
    const count = instance.heartbeats.get('mid01');
    await sleep(HEARTBEAT_MS * 4);
    assert.equal(instance.heartbeats.get('mid01'), count);
    assert.match(await logOf('good'), /ShutdownSequencer Stopping MID server: mid01\n.*ShutdownSequencer MID Server stopped\n$/);
  });

  it('logs an SSLHandshakeException when the instance drops its certificate, and stays running but Down', async () => {
    const rejectedBefore = instance.rejectedHandshakes;
    await runner.start('foreign');
    await until('a failed heartbeat', () => runner.status('foreign').heartbeatsFailed >= 2);
    assert.ok(instance.rejectedHandshakes > rejectedBefore);
    const status = runner.status('foreign');
    assert.equal(status.state, 'active', 'the process runs; the instance sees it Down');
    assert.equal(status.instanceStatus, 'Down');
    assert.match(await logOf('foreign'), /HeartbeatThread SEVERE \*\*\* ERROR \*\*\* Unable to connect to the instance: javax\.net\.ssl\.SSLHandshakeException: Received fatal alert: bad_certificate/);
    assert.equal(instance.heartbeats.get('mid-foreign'), undefined);
    await runner.stop('foreign');
  });

  it('logs an authentication failure when the leaf is not published (401)', async () => {
    instance.published.clear();
    try {
      await runner.start('good');
      await until('a refused heartbeat', () => runner.status('good').heartbeatsFailed >= 1);
      assert.match(await logOf('good'), /SEVERE \*\*\* ERROR \*\*\* Heartbeat refused by the instance: HTTP 401 Unauthorized: User Not Authenticated/);
      assert.equal(runner.status('good').instanceStatus, 'Down');
    } finally {
      instance.published.add(fingerprintOf(pki.leaf.certPem));
      await runner.stop('good');
    }
  });

  it('fails to start without a key entry: "Could not find valid private key"', async () => {
    const status = await runner.start('nokey');
    assert.equal(status.state, 'failed');
    assert.equal(status.lastError, 'Could not find valid private key');
    assert.match(await logOf('nokey'), /MIDServer SEVERE \*\*\* ERROR \*\*\* Could not find valid private key/);
  });

  it('comes Up after the rotation steps: import the bundle, publish the leaf, restart', async () => {
    const leaf = await pki.ca.issueIdentity('CN=mid-nokey,O=midcert Lab', PROFILES.client);
    const bundle = join(root, 'nokey.pem');
    await writeFile(bundle, leaf.certPem + pki.ca.intermediate.certPem + pki.ca.root.certPem + leaf.keyPem, { mode: 0o600 });
    assert.equal((await runManageCertificates(hosts.nokey!, ['-a', 'defaultsecuritykeypairhandle', bundle])).code, 0);
    instance.published.add(fingerprintOf(leaf.certPem));
    const status = await runner.restart('nokey');
    assert.equal(status.state, 'active');
    await until('Up', () => runner.status('nokey').instanceStatus === 'Up');
    await runner.stop('nokey');
  });

  it('reports a wrong store password the way Java does', async () => {
    const unit = 'wrongpass';
    hosts[unit] = hosts.good!;
    runner.register(unit, hosts.good!.home, 'not-the-password');
    const status = await runner.start(unit);
    assert.equal(status.state, 'failed');
    assert.match(await logOf(unit), /java\.io\.IOException: Keystore was tampered with, or password was incorrect/);
    await runner.unregister(unit);
  });

  it('runs a basic-auth MID with an Authorization header and no client certificate', async () => {
    const seen = instance.basicAuthSeen;
    await runner.start('basic');
    await until('a basic heartbeat attempt', () => runner.status('basic').heartbeatsFailed >= 1);
    assert.equal(runner.status('basic').auth, 'basic');
    assert.ok(instance.basicAuthSeen > seen, 'the Authorization header was sent');
    // the stand-in instance drops connections without a client certificate, as lab/instance does
    assert.equal(instance.heartbeats.get('mid-basic'), undefined);
    const log = await logOf('basic');
    assert.match(log, /Basic authentication as instance user svc/);
    assert.match(log, /Received fatal alert: certificate_required/);
    assert.doesNotMatch(log, /Sup3r-secret/);
    await runner.stop('basic');
  });

  it('hosts many MIDs in one process', async () => {
    const count = 40;
    const before = instance.heartbeats.size;
    const made = await Promise.all(Array.from({ length: count }, (_, i) =>
      createMidHost({ home: join(root, `bulk${i}`), name: `bulk${i}`, instanceUrl: instance.url, auth: 'mutual' })));
    await Promise.all(made.map((h) => copyFile(hosts.good!.keystorePath, h.keystorePath)));
    made.forEach((h, i) => runner.register(`bulk${i}`, h.home));
    await Promise.all(made.map((_, i) => runner.start(`bulk${i}`)));
    await until('every bulk MID Up', () => made.every((_, i) => runner.status(`bulk${i}`).instanceStatus === 'Up'), 15_000);
    assert.equal(instance.heartbeats.size, before + count);
    await Promise.all(made.map((_, i) => runner.stop(`bulk${i}`)));
  });

  describe('control socket and ctl-main (systemctl exit codes)', () => {
    let child: ChildProcess;
    let socket: string;
    let caFile: string;

    const ctl = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => {
      let out = '';
      let err = '';
      const code = await midctl(['--socket', socket, ...args], (s) => { out += s; }, (s) => { err += s; });
      return { code, out, err };
    };

    before(async () => {
      socket = join(root, 'mid-runner.sock');
      caFile = join(root, 'root.pem');
      await writeFile(caFile, pki.ca.root.certPem);
      child = spawn(process.execPath, ['--import', 'tsx', RUNNER_MAIN, '--socket', socket, '--ca-file', caFile,
        '--time-scale', String(TIME_SCALE), '--register', `mid01=${hosts.good!.home}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (chunk: Buffer) => { if (chunk.toString().includes('listening')) resolve(); });
        child.once('exit', (code) => reject(new Error(`runner exited with ${code}`)));
      });
    });

    after(async () => {
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    });

    it('is-active exits 3 when inactive and 0 when active; status prints systemctl-like text', async () => {
      assert.deepEqual(await ctl('is-active', 'mid01'), { code: 3, out: 'inactive\n', err: '' });
      assert.equal((await ctl('start', 'mid01.service')).code, 0);
      assert.deepEqual(await ctl('is-active', 'mid01'), { code: 0, out: 'active\n', err: '' });
      await until('Up in the child runner', async () => (await ctl('status', 'mid01')).out.includes(' Up ('));
      const status = await ctl('status', 'mid01');
      assert.equal(status.code, 0);
      assert.match(status.out, /^● mid01\.service - ServiceNow MID Server mid01 \(midcert lab\)\n\s+Loaded: .*\n\s+Active: active \(running\) since /);
      assert.equal((await ctl('restart', 'mid01')).code, 0);
      assert.equal((await ctl('stop', 'mid01')).code, 0);
      const stopped = await ctl('status', 'mid01');
      assert.equal(stopped.code, 3);
      assert.match(stopped.out, /Active: inactive \(dead\)/);
    });

    it('answers unknown units and failed units like systemctl', async () => {
      assert.deepEqual(await ctl('start', 'nosuch'), { code: 5, out: '', err: 'Failed to start nosuch.service: Unit nosuch.service not found.\n' });
      assert.equal((await ctl('status', 'nosuch')).code, 4);
      assert.deepEqual(await ctl('is-active', 'nosuch'), { code: 3, out: 'inactive\n', err: '' });
      const broken = await createMidHost({ home: join(root, 'broken'), name: 'mid-broken', instanceUrl: instance.url, auth: 'mutual' });
      await writeFile(broken.keystorePath, 'not a keystore');
      assert.equal((await ctl('register', 'mid-broken', broken.home)).code, 0);
      assert.equal((await ctl('start', 'mid-broken')).code, 0, 'start returns 0 and the unit fails later, like a Type=simple unit');
      assert.deepEqual(await ctl('is-active', 'mid-broken'), { code: 3, out: 'failed\n', err: '' });
      assert.match(await readFile(broken.logPath, 'utf8'), /Invalid keystore format[\s\S]*Could not find valid private key/);
      assert.equal((await ctl('bogus')).code, 2);
      const list = await ctl('--json', 'list');
      assert.equal(list.code, 0);
      assert.deepEqual((JSON.parse(list.out) as { units: { unit: string }[] }).units.map((u) => u.unit).sort(), ['mid-broken', 'mid01']);
    });

    it('works as a separate command (the agent service.manager array)', async () => {
      const run = (args: string[]): Promise<{ code: number; out: string }> => new Promise((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', CTL_MAIN, '--socket', socket, ...args], (err, stdout) => {
          resolve({ code: err ? Number((err as { code?: number }).code) : 0, out: stdout });
        });
      });
      assert.deepEqual(await run(['is-active', 'mid01']), { code: 3, out: 'inactive\n' });
      assert.deepEqual(await run(['start', 'mid01']), { code: 0, out: '' });
      assert.deepEqual(await run(['is-active', 'mid01']), { code: 0, out: 'active\n' });
      const unreachable = await new Promise<number>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', CTL_MAIN, '--socket', join(root, 'none.sock'), 'is-active', 'mid01'], (err) => resolve(err ? Number((err as { code?: number }).code) : 0));
      });
      assert.equal(unreachable, 1);
    });

    it('shuts down on the shutdown verb, stopping its MIDs', async () => {
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      assert.equal((await ctl('shutdown')).code, 0);
      assert.equal(await exited, 0);
      assert.match(await readFile(hosts.good!.logPath, 'utf8'), /MID Server stopped\n$/);
    });
  });
});
