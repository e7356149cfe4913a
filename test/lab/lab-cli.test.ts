import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../helpers/run.js';

/**
 * The lab command end to end: the real bin/midcert-lab starts a background lab, and the test
 * talks to it the way the acceptance tests and the agent do (REST with the admin credentials,
 * TLS trusting only caFile, the `mid` systemctl wrapper, certsrv with Basic auth).
 */

const LAB = resolve(import.meta.dirname, '../../bin/midcert-lab');

interface UpJson {
  auth: 'mutual' | 'basic';
  instance: { url: string; username: string; password: string };
  adcs: { url: string; username: string; password: string; template: string };
  mids: Array<{ name: string; home: string; auth: 'mutual' | 'basic'; service: { start: string[]; stop: string[]; status: string[] } }>;
  caFile: string;
  pids: Record<string, number>;
}

interface Reply { status: number; text: string; json: any; authorized: boolean }

/** One HTTPS GET that trusts only `ca` (Node's public roots when undefined); a failed verification rejects. */
function get(url: string, ca: string | undefined, auth?: [string, string], headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((done, fail) => {
    const all: Record<string, string> = { Accept: 'application/json', ...headers };
    if (auth) all['Authorization'] = `Basic ${Buffer.from(auth.join(':')).toString('base64')}`;
    const req = request(url, { ...(ca ? { ca } : {}), agent: false, headers: all }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => {
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        done({ status: res.statusCode ?? 0, text, json, authorized: (res.socket as import('node:tls').TLSSocket).authorized });
      });
    });
    req.on('error', fail);
    req.end();
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function recordedPids(dir: string): Promise<number[]> {
  const state = JSON.parse(await readFile(join(dir, 'lab.json'), 'utf8')) as { processes: Record<string, { pid: number }> };
  return Object.values(state.processes).map((p) => p.pid);
}

describe('midcert-lab (lab command)', function () {
  this.timeout(60_000);
  let dir: string;
  let lab: UpJson;
  let ca: string;

  const labRun = (args: string[]): ReturnType<typeof run> => run(LAB, args, { timeoutMs: 55_000 });
  const table = async (path: string): Promise<any[]> => {
    const reply = await get(`${lab.instance.url}/api/now/table/${path}`, ca, [lab.instance.username, lab.instance.password]);
    assert.equal(reply.status, 200, reply.text);
    return reply.json.result as any[];
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-lab-'));
    // Vendor timings × 0.0125: poll 500 ms, MID start 375 ms, instance monitor 3.75 s.
    const up = await labRun(['up', '--dir', dir, '--mids', '2', '--json', '--publish-delay-ms', '200', '--time-scale', '0.0125']);
    assert.equal(up.code, 0, `up failed: ${up.stderr}`);
    lab = JSON.parse(up.stdout) as UpJson;
    ca = await readFile(lab.caFile, 'utf8');
  });

  after(async () => {
    if (!dir) return;
    await labRun(['down', '--dir', dir]).catch(() => undefined);
    for (const pid of await recordedPids(dir).catch(() => [] as number[])) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('up --json prints the contract: instance, adcs, mids with agent/ homes, caFile', async () => {
    assert.match(lab.instance.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(lab.instance.username, 'admin');
    assert.ok(lab.instance.password.length >= 16);
    assert.match(lab.adcs.url, /^https:\/\/127\.0\.0\.1:\d+\/certsrv$/);
    assert.ok(lab.adcs.username && lab.adcs.password.length >= 16);
    assert.equal(lab.adcs.template, 'MIDServerClient');
    assert.deepEqual(lab.mids.map((m) => m.name), ['mid01', 'mid02']);
    assert.equal(lab.auth, 'mutual', '--auth defaults to mutual');
    for (const mid of lab.mids) {
      assert.equal(mid.auth, 'mutual');
      assert.ok((await stat(join(mid.home, 'agent', 'logs', 'wrapper.log'))).isFile(), 'the vendor\'s second log file');
      assert.equal(mid.home, join(dir, 'mids', mid.name));
      assert.ok((await stat(join(mid.home, 'agent', 'config.xml'))).isFile());
    }
    assert.match(ca, /^-----BEGIN CERTIFICATE-----/);
    // Secrets only in the 0600 files and the --json output: not in lab.json, not in any log.
    for (const file of ['secrets/instance-admin.password', 'secrets/adcs.password', 'lab.json']) {
      assert.equal((await stat(join(dir, file))).mode & 0o777, 0o600, file);
    }
    const texts = [await readFile(join(dir, 'lab.json'), 'utf8'), ...await Promise.all((await readdir(join(dir, 'logs'))).map((f) => readFile(join(dir, 'logs', f), 'utf8')))];
    for (const text of texts) for (const secret of [lab.instance.password, lab.adcs.password]) assert.equal(text.includes(secret), false);
  });

  it('caFile verifies the instance and ADCS server certificates', async () => {
    const reply = await get(`${lab.instance.url}/adcv2/server`, ca);
    assert.equal(reply.authorized, true);
    assert.equal(reply.text, 'snow_adc');
    await assert.rejects(get(`${lab.instance.url}/adcv2/server`, undefined), /certificate/i, 'not a publicly trusted certificate');
    assert.equal((await get(lab.adcs.url + '/', ca, [lab.adcs.username, lab.adcs.password], { 'User-Agent': 'Mozilla/5.0' })).authorized, true);
  });

  it('starts every MID Up, in mutual auth with a short-lived leaf published for its mid_server service user', async () => {
    const agents = await table('ecc_agent?sysparm_fields=name,status,is_using_custom_cert');
    for (const name of ['mid01', 'mid02']) {
      assert.deepEqual(agents.find((a) => a.name === name), { name, status: 'Up', is_using_custom_cert: 'true' });
    }
    const [user] = await table('sys_user?sysparm_query=user_name=mid.mid01&sysparm_fields=sys_id,active');
    assert.equal(user?.active, 'true');
    const roles = await table(`sys_user_has_role?sysparm_query=user=${user.sys_id}&sysparm_exclude_reference_link=true`);
    assert.deepEqual(roles.map((r) => r.role), ['mid_server']);
    const [leaf] = await table(`sys_user_certificate?sysparm_query=user=${user.sys_id}&sysparm_exclude_reference_link=true`);
    assert.equal(leaf.publish_status, 'Exists');
    assert.equal(leaf.subject, 'CN=mid01,O=midcert Lab');
    const days = (Date.parse(`${leaf.expires.replace(' ', 'T')}Z`) - Date.now()) / 86_400_000;
    assert.ok(days > 19 && days <= 20, `leaf valid for ${days} days`);
    const chains = await table('sys_ca_certificate?sysparm_query=active=true');
    assert.equal(chains.length, 1);
    assert.equal(chains[0].publish_status, 'Exists');
    const config = await readFile(join(lab.mids[0]!.home, 'agent', 'config.xml'), 'utf8');
    assert.equal(config.includes('mid.instance.password'), false, 'mutual auth: no credential lines');
  });

  it('answers certsrv (certcarc.asp) with Basic auth on the ADCS', async () => {
    const ua = { 'User-Agent': 'Mozilla/5.0 (lab-cli test)' };
    const page = await get(`${lab.adcs.url}/certcarc.asp`, ca, [lab.adcs.username, lab.adcs.password], ua);
    assert.equal(page.status, 200);
    assert.match(page.text, /var nRenewals=\d+;/);
    assert.equal((await get(`${lab.adcs.url}/certcarc.asp`, ca, [lab.adcs.username, 'wrong-password'], ua)).status, 401);
  });

  it('mid stop/is-active/start works like systemctl (is-active exits 3 when stopped)', async () => {
    assert.equal((await labRun(['mid', 'is-active', '--dir', dir, 'mid02'])).code, 0);
    assert.equal((await labRun(['mid', 'stop', '--dir', dir, 'mid02'])).code, 0);
    const inactive = await labRun(['mid', 'is-active', '--dir', dir, 'mid02']);
    assert.deepEqual([inactive.code, inactive.stdout.trim()], [3, 'inactive']);
    assert.equal((await labRun(['mid', 'status', '--dir', dir, 'mid02'])).code, 3);
    assert.equal((await labRun(['mid', 'start', '--dir', dir, 'mid02'])).code, 0);
    // The service arrays printed by up are what the agent runs.
    const [file, ...args] = lab.mids[1]!.service.status as [string, ...string[]];
    assert.equal((await run(file, args)).code, 0);
    assert.equal((await labRun(['mid', 'start', '--dir', dir, 'mid99'])).code, 5);
    assert.equal((await labRun(['mid', 'status', '--dir', dir, 'mid99'])).code, 4);
    assert.equal((await labRun(['mid', 'reload', '--dir', dir, 'mid01'])).code, 2);
  });

  it('status reports the processes and each MID', async () => {
    const status = await labRun(['status', '--dir', dir, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout);
    assert.equal(report.state, 'running');
    assert.equal(report.instance.url, lab.instance.url);
    assert.deepEqual(report.mids.map((m: any) => [m.name, m.unit, m.ecc]), [['mid01', 'active', 'Up'], ['mid02', 'active', 'Up']]);
  });

  it('refuses a second up on a running lab, and a usage error exits 2', async () => {
    const again = await labRun(['up', '--dir', dir, '--time-scale', '0.0125', '--mids', '1']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^midcert-lab: error \[LAB_RUNNING\] a lab is already running in .*down --dir/);
    assert.equal((await labRun(['up', '--dir', dir, '--time-scale', '0.0125', '--mids', 'many'])).code, 2);
  });

  it('down stops every process and removes the socket; a second down is fine', async () => {
    const pids = await recordedPids(dir);
    assert.deepEqual(pids.sort(), Object.values(lab.pids).sort());
    const down = await labRun(['down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still runs`);
    await assert.rejects(stat(join(dir, 'run', 'mid-runner.sock')));
    const second = await labRun(['down', '--dir', dir]);
    assert.equal(second.code, 0);
    assert.equal((await labRun(['status', '--dir', dir])).code, 3);
    assert.equal((await labRun(['mid', 'is-active', '--dir', dir, 'mid01'])).code, 1, 'runner gone: 1, as systemctl without a bus');
  });

  it('up over a stopped lab starts afresh; the readable output names the password file, not the password', async () => {
    const up = await labRun(['up', '--dir', dir, '--time-scale', '0.0125', '--mids', '0', '--publish-delay-ms', '50']);
    assert.equal(up.code, 0, up.stderr);
    const password = (await readFile(join(dir, 'secrets', 'instance-admin.password'), 'utf8')).trim();
    assert.notEqual(password, lab.instance.password, 'new credentials');
    assert.equal(up.stdout.includes(password), false);
    assert.match(up.stdout, /secrets\/instance-admin\.password/);
    assert.match(up.stdout, /down --dir/);
    const pids = await recordedPids(dir);
    assert.equal((await labRun(['down', '--dir', dir])).code, 0);
    for (const pid of pids) assert.equal(alive(pid), false);
  });

  // Issue 11 item B / vendor-facts §6: a freshly installed basic-auth MID (credentials in config.xml, its own
  // self-signed RSA-2048 defaultsecuritykeypairhandle made on first start, validated by the instance's autoValidate).
  // Needs the instance side of docs/lab/mid-instance-protocol.md §1 and §4 (Basic-auth polls).
  it('up --auth basic starts freshly installed MIDs: credentials in config.xml, self-signed pair, Up and validated', async () => {
    const basicDir = await mkdtemp(join(tmpdir(), 'lab-basic-'));
    try {
      const up = await labRun(['up', '--dir', basicDir, '--mids', '1', '--json', '--auth', 'basic', '--time-scale', '0.0125']);
      assert.equal(up.code, 0, up.stderr);
      const result = JSON.parse(up.stdout) as { auth: string; mids: { name: string; home: string; auth: string; leafNotAfter: string }[]; instance: { url: string; password: string } };
      assert.equal(result.auth, 'basic');
      const mid = result.mids[0]!;
      assert.equal(mid.auth, 'basic');
      const config = await readFile(join(mid.home, 'agent', 'config.xml'), 'utf8');
      assert.match(config, /name="mid\.instance\.username" value="mid\.mid01"/);
      assert.match(config, /name="mid\.instance\.password" secure="true" value="[^"]+"/);
      assert.match(config, /name="keypairs\.mid_id" value="[0-9a-f]{32}"/);
      assert.ok(!Number.isNaN(Date.parse(mid.leafNotAfter)), 'the self-signed pair\'s expiry');
      const status = await run(LAB, ['mid', 'status', '--dir', basicDir, '--json', 'mid01'], { timeoutMs: 20_000 });
      const unit = (JSON.parse(status.stdout) as { status: { leaf?: { selfSigned?: boolean }; validated?: string } }).status;
      assert.equal(unit.leaf?.selfSigned, true);
      assert.equal(unit.validated, 'true', 'instance autoValidate on the first poll');
    } finally {
      await labRun(['down', '--dir', basicDir]);
      await rm(basicDir, { recursive: true, force: true });
    }
  });

  it('stops what it started when a part cannot start (port taken)', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
    const port = (blocker.address() as import('node:net').AddressInfo).port;
    try {
      const up = await labRun(['up', '--dir', dir, '--time-scale', '0.0125', '--mids', '1', '--port-base', String(port)]);
      assert.equal(up.code, 1);
      assert.match(up.stderr, /\[LAB_START_FAILED\] the lab instance exited .*EADDRINUSE/);
      for (const pid of await recordedPids(dir)) assert.equal(alive(pid), false, `pid ${pid} left running`);
    } finally {
      await new Promise((done) => blocker.close(done));
    }
  });
});
