import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import {
  ADMIN, asAdmin, call, enrolMid, eventually, heartbeat, makePki, publishChain, start, uploadCertificate, type LabPki, type StartedInstance,
} from './instance-fixtures.js';

const REPO = resolve(import.meta.dirname, '../..');

describe('lab instance: state file and the command entry', function () {
  let pki: LabPki;
  let dir: string;
  const running: StartedInstance[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    pki = await makePki();
    dir = await mkdtemp(join(tmpdir(), 'midcert-instance-'));
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const instance of running) await instance.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  const startTracked = async (options: Parameters<typeof start>[1]): Promise<StartedInstance> => {
    const instance = await start(pki, options);
    running.push(instance);
    return instance;
  };

  describe('stateFile', () => {
    it('survives a restart: records, attachments, passwords, tokens, trust anchors, supports_tls, ecc_agent', async () => {
      const stateFile = join(dir, 'state.json');
      const first = await startTracked({ stateFile, publishDelayMs: 20 });
      await publishChain(first, pki.ca.chainPem);
      const mid = await enrolMid(first, 'mid-persist');
      assert.equal((await heartbeat(first, mid.identity, 'mid-persist')).status, 200);
      first.admin.addUser({ userName: 'keeper', password: 'keeper-pass-1' });
      first.admin.addOAuthToken('persisted-token-0123456789', 'keeper');
      first.admin.setSupportsTls('mixed');
      const anchors = first.admin.trustAnchors().sort();
      await first.close();

      const info = await stat(stateFile);
      assert.equal(info.mode & 0o777, 0o600, 'the state file holds password hashes: 0600');
      const saved = await readFile(stateFile, 'utf8');
      for (const secret of ['keeper-pass-1', 'persisted-token-0123456789', ADMIN.password]) assert.equal(saved.includes(secret), false, 'no secret in clear');

      const second = await startTracked({ stateFile, publishDelayMs: 20 });
      assert.deepEqual(second.admin.trustAnchors().sort(), anchors);
      assert.equal((await heartbeat(second, mid.identity, 'mid-persist')).status, 200, 'mTLS works right after restart');
      assert.equal(second.admin.tables.query('ecc_agent', 'name=mid-persist').length, 1);
      assert.equal((await call(second, '/api/now/table/sys_user?sysparm_limit=1', { auth: ['keeper', 'keeper-pass-1'] })).status, 200);
      assert.equal((await call(second, '/api/now/table/sys_user?sysparm_limit=1', { auth: { bearer: 'persisted-token-0123456789' } })).status, 200);
      assert.equal((await call(second, '/adcv2/supports_tls')).text, 'mixed');
      const [attachment] = second.admin.tables.query('sys_attachment', `table_sys_id=${mid.record.sys_id}`);
      const file = await call(second, `/api/now/attachment/${attachment?.['sys_id']}/file`, { auth: asAdmin });
      assert.equal(file.text, mid.identity.certPem);
      await second.close();
    });

    it('resumes publishing a record that was pending at shutdown', async () => {
      const stateFile = join(dir, 'pending.json');
      const first = await startTracked({ stateFile, publishDelayMs: 60_000 });
      const record = await uploadCertificate(first, 'sys_ca_certificate', pki.ca.chainPem);
      await first.close();
      const second = await startTracked({ stateFile, publishDelayMs: 50 });
      await eventually(() => (second.admin.tables.get('sys_ca_certificate', record.sys_id)?.['publish_status'] === 'Exists' ? true : undefined));
      await second.close();
    });

    it('resets the admin password to the one given at start', async () => {
      const stateFile = join(dir, 'admin.json');
      await (await startTracked({ stateFile })).close();
      const second = await startTracked({ stateFile, admin: { username: ADMIN.username, password: 'a-new-admin-password' } });
      assert.equal((await call(second, '/api/now/table/sys_user', { auth: asAdmin })).status, 401);
      assert.equal((await call(second, '/api/now/table/sys_user', { auth: [ADMIN.username, 'a-new-admin-password'] })).status, 200);
      await second.close();
    });

    it('refuses to start from a state file it cannot use', async () => {
      const stateFile = join(dir, 'broken.json');
      await writeFile(stateFile, JSON.stringify({ format: 'something-else' }));
      await assert.rejects(start(pki, { stateFile }), /not usable/);
      await writeFile(stateFile, JSON.stringify({ format: 'midcert-lab-instance/1', tables: { sys_user: [{ sys_id: 'bad' }] }, attachments: {}, credentials: { passwords: {}, tokens: [] }, supportsTls: 'true' }));
      await assert.rejects(start(pki, { stateFile }), /record is malformed/);
    });
  });

  describe('main.ts', () => {
    const spawnMain = (args: string[]): ChildProcess => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'lab/instance/main.ts'), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      return child;
    };
    const firstLine = async (child: ChildProcess): Promise<string> => {
      const lines = createInterface({ input: child.stdout! });
      const [line] = await once(lines, 'line') as [string];
      lines.close();
      return line;
    };

    it('prints {"url"} once listening, serves HTTPS with the configured publish word, and exits 0 on SIGTERM after writing state and log', async function () {
      this.timeout(20_000);
      await writeFile(join(dir, 'instance.pem'), pki.server.certPem + pki.ca.intermediate.certPem);
      await writeFile(join(dir, 'instance.key'), pki.server.keyPem, { mode: 0o600 });
      await writeFile(join(dir, 'admin.password'), `${ADMIN.password}\n`, { mode: 0o600 });
      const config = {
        tls: { certFile: 'instance.pem', keyFile: 'instance.key' },
        admin: { username: ADMIN.username, passwordFile: 'admin.password' },
        publishDelayMs: 10, publishWord: 'Active', stateFile: 'main-state.json', logFile: 'instance.log',
      };
      await writeFile(join(dir, 'instance.json'), JSON.stringify(config));
      const child = spawnMain([join(dir, 'instance.json')]);
      const printed = JSON.parse(await firstLine(child)) as { url: string };
      assert.match(printed.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const remote = Object.assign(Object.create(null), { url: printed.url, pki }) as StartedInstance;
      const reply = await call(remote, '/api/now/table/sys_user?sysparm_query=user_name=admin&sysparm_fields=user_name', { auth: asAdmin });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['server'], 'snow_adc');
      const record = await uploadCertificate(remote, 'sys_ca_certificate', pki.ca.chainPem);
      await eventually(async () => {
        const read = await call(remote, `/api/now/table/sys_ca_certificate/${record.sys_id}?sysparm_fields=publish_status`, { auth: asAdmin });
        return read.json.result.publish_status === 'Active' ? true : undefined;
      });
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit') as [number | null];
      assert.equal(code, 0);
      const log = await readFile(join(dir, 'instance.log'), 'utf8');
      assert.match(log, /listening on https:\/\/127\.0\.0\.1:\d+/);
      assert.match(log, /stopped/);
      const state = JSON.parse(await readFile(join(dir, 'main-state.json'), 'utf8')) as { format: string };
      assert.equal(state.format, 'midcert-lab-instance/1');
    });

    it('exits 2 on bad usage and 1 with a message for a missing config', async () => {
      const usage = spawnMain([]);
      assert.equal((await once(usage, 'exit'))[0], 2);
      const missing = spawnMain([join(dir, 'nope.json')]);
      let stderr = '';
      missing.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
      assert.equal((await once(missing, 'exit'))[0], 1);
      assert.match(stderr, /nope\.json/);
    });
  });
});
