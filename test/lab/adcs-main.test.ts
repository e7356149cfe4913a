import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { buildCsr } from '../../pki/csr.js';
import { PROFILES } from '../../pki/issue.js';
import { generateKey } from '../../pki/keys.js';
import { startAdcs, type AdcsOptions, type RunningAdcs } from '../../lab/adcs/index.js';
import { createLabCa, saveLabCa, type LabCa } from '../../lab/lab-ca.js';
import { FETCH_DISPOSITION, PENDING_ID, REQ_ID, SUBMIT_DISPOSITION, call, submitForm } from './adcs-client.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const USER: [string, string] = ['LAB\\mid-enroll', 'state-test-password'];

describe('lab/adcs: state file and the main.ts runner', function () {
  this.timeout(30_000);
  let ca: LabCa;
  let dir: string;
  let csr: string;
  let options: AdcsOptions;
  const running: RunningAdcs[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    ca = await createLabCa('ADCS State');
    dir = await mkdtemp(join(tmpdir(), 'adcs-main-'));
    const server = await ca.issueIdentity('CN=adcs.lab.local', { ...PROFILES.server, sans: ['IP:127.0.0.1'] });
    csr = buildCsr(await generateKey(), { subject: 'CN=mid02.lab.local' });
    options = {
      ca, tls: { certPem: server.certPem + ca.intermediate.certPem, keyPem: server.keyPem },
      users: [{ username: USER[0], password: USER[1] }],
      templates: {
        MIDServerClient: { profile: 'client', validityDays: 365, mode: 'issue' },
        MIDServerApproval: { profile: 'client', validityDays: 365, mode: 'pending' },
      },
      stateFile: join(dir, 'state', 'adcs.json'),
      firstRequestId: 500,
    };
  });

  after(async () => {
    for (const adcs of running) await adcs.close();
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const start = async (): Promise<RunningAdcs> => {
    const adcs = await startAdcs(options);
    running.push(adcs);
    return adcs;
  };
  const post = (adcs: RunningAdcs, template: string) =>
    call(`${adcs.url}/certfnsh.asp`, ca.root.certPem, { auth: USER, method: 'POST', body: submitForm(csr, template) });
  const get = (adcs: RunningAdcs, path: string) => call(`${adcs.url}/${path}`, ca.root.certPem, { auth: USER });

  it('keeps requests, ids, CA renewals and template modes across a restart (state dir created, file 0600)', async () => {
    const first = await start();
    const pendingId = Number(PENDING_ID.exec((await post(first, 'MIDServerApproval')).text)?.[1]);
    assert.equal(pendingId, 500);
    await first.renewCa();
    await first.setTemplateMode('MIDServerClient', 'deny');
    await first.close();
    assert.equal((await stat(options.stateFile as string)).mode & 0o777, 0o600);

    const second = await start();
    assert.equal(FETCH_DISPOSITION.exec((await get(second, `certnew.cer?ReqID=${pendingId}&Enc=b64`)).text)?.[1], 'Taken Under Submission');
    assert.match((await get(second, 'certcarc.asp')).text, /var nRenewals=1;/);
    assert.equal(SUBMIT_DISPOSITION.exec((await post(second, 'MIDServerClient')).text)?.[1], 'Denied by Policy Module');
    await second.approve(pendingId);
    await second.setTemplateMode('MIDServerClient', 'issue');
    const issued = await post(second, 'MIDServerClient');
    assert.equal(Number(REQ_ID.exec(issued.text)?.[1]), 502, 'ids continue after a restart');
    assert.equal((await get(second, `certnew.cer?ReqID=${pendingId}&Enc=b64`)).headers['content-type'], 'application/pkix-cert');
    assert.deepEqual(second.requests().map((r) => [r.id, r.status]), [[500, 'issued'], [501, 'denied'], [502, 'issued']]);
  });

  it('runs from a JSON config: prints {"url"} when listening and exits 0 on SIGTERM', async () => {
    const caDir = join(dir, 'ca');
    await saveLabCa(ca, caDir);
    const config = join(dir, 'adcs.json');
    await writeFile(config, JSON.stringify({
      caDir: 'ca', port: 0, stateFile: 'main-state.json',
      users: [{ username: USER[0], passwordEnv: 'ADCS_LAB_TEST_PASSWORD' }],
      templates: { MIDServerClient: { profile: 'client', validityDays: 30, mode: 'issue' } },
    }));
    const child = spawn(process.execPath, ['--import', 'tsx', 'lab/adcs/main.ts', config], {
      cwd: REPO, env: { ...process.env, ADCS_LAB_TEST_PASSWORD: USER[1] }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const line = await new Promise<string>((ok, fail) => {
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', ok);
      child.once('exit', (code) => fail(new Error(`exited ${code}: ${stderr}`)));
    });
    const { url } = JSON.parse(line) as { url: string };
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/certsrv$/);
    const page = await call(`${url}/certfnsh.asp`, ca.root.certPem, { auth: USER, method: 'POST', body: submitForm(csr, 'MIDServerClient') });
    assert.ok(REQ_ID.test(page.text), 'the runner issues with the configured template');
    const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.doesNotMatch(stderr, new RegExp(USER[1]));
    assert.ok((await stat(join(dir, 'main-state.json'))).size > 0);
  });

  it('fails with exit 1 naming the missing variable, never a password', async () => {
    const config = join(dir, 'broken.json');
    await writeFile(config, JSON.stringify({ caDir: 'ca', users: [{ username: 'LAB\\x', passwordEnv: 'ADCS_LAB_UNSET_VARIABLE' }] }));
    const child = spawn(process.execPath, ['--import', 'tsx', 'lab/adcs/main.ts', config], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((ok) => child.once('exit', (c) => ok(c)));
    assert.equal(code, 1);
    assert.match(stderr, /ADCS_LAB_UNSET_VARIABLE is empty/);
  });
});
