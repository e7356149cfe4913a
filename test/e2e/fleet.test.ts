import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createLabCa, saveLabCa } from '../../lab/lab-ca.js';
import { run, type RunResult } from '../helpers/run.js';

/**
 * The operator's view, end to end: a simulated fleet (instance, MIDs, ADCS, one agent per MID,
 * controller data dir) driven only through bin/midcert-lab and bin/midcert, as in the README.
 */
const LAB = resolve('bin/midcert-lab');
const MIDCERT = resolve('bin/midcert');
const MIDS = Number(process.env.MIDCERT_E2E_MIDS ?? 4);
/** serve.leaseSeconds of the lab controller: how long a killed controller's job stays its own. */
const LEASE_SECONDS = 8;

interface Lab {
  instance: { url: string; username: string; password: string };
  mids: { name: string; home: string }[];
  caFile: string;
  controller: { dataDir: string };
}

describe(`end to end: a fleet of ${MIDS} simulated MIDs rotated by the controller`, function () {
  this.timeout(600_000);
  let dir: string;
  let lab: Lab;
  const midcert = (...args: string[]): Promise<RunResult> => run(MIDCERT, ['--data-dir', lab.controller.dataDir, ...args], { timeoutMs: 300_000 });
  const json = async (...args: string[]): Promise<any> => {
    const res = await midcert(...args, '--json');
    try {
      return { code: res.code, ...JSON.parse(res.stdout) };
    } catch {
      throw new Error(`midcert ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
    }
  };
  const eccAgent = async (name: string): Promise<Record<string, string> | undefined> => {
    const { request } = await import('node:https');
    const ca = await readFile(lab.caFile, 'utf8');
    return new Promise((resolveReq, reject) => {
      const url = new URL(`/api/now/table/ecc_agent?sysparm_query=name=${name}`, lab.instance.url);
      request(url, { ca, headers: { Authorization: `Basic ${Buffer.from(`${lab.instance.username}:${lab.instance.password}`).toString('base64')}` } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => resolveReq((JSON.parse(body) as { result: Record<string, string>[] }).result[0]));
      }).on('error', reject).end();
    });
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-e2e-'));
    const up = await run(LAB, ['up', '--dir', dir, '--mids', String(MIDS), '--with-agents', '--time-scale', '0.0125', '--json'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    lab = JSON.parse(up.stdout) as Lab;
    const cfgPath = join(lab.controller.dataDir, 'controller.yaml');
    const cfg = parseYaml(await readFile(cfgPath, 'utf8')) as Record<string, Record<string, unknown> | undefined>;
    cfg.serve = { ...cfg.serve, leaseSeconds: LEASE_SECONDS };
    await writeFile(cfgPath, stringifyYaml(cfg));
  });

  after(async () => {
    if (dir) await run(LAB, ['down', '--dir', dir], { timeoutMs: 120_000 });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('preflight passes for the instance and every MID host', async () => {
    const report = await json('preflight');
    assert.equal(report.ok, true, JSON.stringify(report.instance.filter((c: { ok: boolean }) => !c.ok)));
    assert.equal(report.agents.length, MIDS);
  });

  it('shows the fleet: every MID reachable, Up, expiring soon', async () => {
    const status = await json('status');
    assert.equal(status.agents.length, MIDS);
    for (const a of status.agents) {
      assert.equal(a.reachable, true, JSON.stringify(a));
      assert.equal(a.instanceStatus, 'Up');
      assert.ok(a.certificate.daysLeft <= 20);
    }
    assert.match(status.instance.caChain.sha256, /^[0-9a-f]{64}$/);
  });

  it('rotates one MID: new leaf in its keystore, published, Up on the instance', async () => {
    const before = (await json('status', '--agent', 'mid01')).agents[0];
    const report = await json('rotate', '--agent', 'mid01', '--force');
    assert.equal(report.ok, true, JSON.stringify(report));
    const [result] = report.results;
    assert.equal(result.state, 'succeeded');
    assert.notEqual(result.newSha256, before.certificate.sha256);
    const after = (await json('status', '--agent', 'mid01')).agents[0];
    assert.equal(after.certificate.sha256, result.newSha256);
    assert.ok(after.certificate.daysLeft > 300);
    assert.equal((await eccAgent('mid01'))?.status, 'Up');
  });

  it('Ansible (real ansible-playbook, real controller): check mode changes nothing, a run renews, a rerun is changed=false', async () => {
    const home = join(dir, 'ansible-home');
    const playbook = join(dir, 'renew-mid02.yml');
    await writeFile(playbook, [
      '- hosts: localhost', '  connection: local', '  gather_facts: false', '  tasks:',
      '    - midcert.fleet.midcert_certificate:',
      `        midcert_bin: ${MIDCERT}`, `        data_dir: ${lab.controller.dataDir}`,
      '        name: mid02', '        state: present', '        min_days: 30', '',
    ].join('\n'));
    const ansiblePython = ((await readFile((await run('sh', ['-c', 'command -v ansible-playbook'])).stdout.trim(), 'utf8')).split('\n')[0] ?? '').replace(/^#!\s*/, '').split(' ')[0] ?? 'python3';
    const env = {
      ...process.env, HOME: home, ANSIBLE_COLLECTIONS_PATH: resolve('ansible'), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH: 'false',
      ANSIBLE_LOCAL_TEMP: join(home, 'local'), ANSIBLE_REMOTE_TEMP: join(home, 'remote'), ANSIBLE_PYTHON_INTERPRETER: ansiblePython,
      ANSIBLE_NOCOLOR: '1', ANSIBLE_RETRY_FILES_ENABLED: 'false', ANSIBLE_LOCALHOST_WARNING: 'false', ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false',
    };
    const playbookRun = async (...extra: string[]): Promise<number> => {
      const res = await run('ansible-playbook', ['-i', 'localhost,', playbook, ...extra], { env, timeoutMs: 300_000 });
      assert.equal(res.code, 0, res.stdout + res.stderr);
      return Number(/localhost\s*:\s*ok=\d+\s+changed=(\d+)/.exec(res.stdout)?.[1] ?? -1);
    };
    const sha = async (): Promise<string> => (await json('status', '--agent', 'mid02')).agents[0].certificate.sha256;
    const before = await sha();
    assert.equal(await playbookRun('--check'), 1, 'check mode reports the renewal it would do');
    assert.equal(await sha(), before, 'check mode changed nothing');
    assert.equal(await playbookRun(), 1);
    assert.notEqual(await sha(), before, 'the real run renewed');
    assert.equal(await playbookRun(), 0, 'the second run is changed=false');
    assert.equal((await eccAgent('mid02'))?.status, 'Up');
  });

  it('rotates the fleet in waves with a canary; a failing MID is rolled back and reported, the rest succeed', async () => {
    const broken = lab.mids[2] as { name: string; home: string };
    const script = join(broken.home, 'agent', 'bin', 'scripts', 'manage-certificates.sh');
    const original = await readFile(script);
    await writeFile(script, '#!/bin/sh\necho "keytool error: java.io.IOException: simulated failure" >&2\nexit 1\n');
    await chmod(script, 0o755);
    const before = (await json('status', '--agent', broken.name)).agents[0].certificate.sha256;
    try {
      const report = await json('rotate', '--all', '--force', '--canary', '1', '--batch', '3', '--max-failures', '2');
      assert.equal(report.ok, false);
      assert.equal(report.code, 1);
      assert.ok(report.plan.waves.length >= 2);
      assert.equal(report.plan.waves[0].length, 1);
      const byName = new Map(report.results.map((r: { name: string }) => [r.name, r]));
      const failed = byName.get(broken.name) as { state: string; error: { code: string; message: string } };
      assert.equal(failed.state, 'failed');
      assert.equal(failed.error.code, 'SCRIPT_FAILED');
      assert.match(failed.error.message, /rolled back/);
      assert.equal(report.summary.succeeded, MIDS - 1);
      assert.equal((await json('status', '--agent', broken.name)).agents[0].certificate.sha256, before, 'the failed MID keeps its old certificate');
      assert.equal((await eccAgent(broken.name))?.status, 'Up');
    } finally {
      await writeFile(script, original);
    }
  });

  it('resumes a rotation after the controller is killed mid-fleet; a re-run of the same request rotates every MID once in total, --force once more', async () => {
    // Installs per MID, counted on the hosts: the successful outcomes in each agent's journal history.
    const installs = async (): Promise<Map<string, number>> => new Map(await Promise.all(lab.mids.map(async (m) => {
      const history = JSON.parse(await readFile(join(dir, 'agents', m.name, 'state', 'history.json'), 'utf8')) as { ok: boolean }[];
      return [m.name, history.filter((r) => r.ok).length] as [string, number];
    })));
    const delta = (after: Map<string, number>, before: Map<string, number>): Record<string, number> =>
      Object.fromEntries(lab.mids.map((m) => [m.name, (after.get(m.name) ?? 0) - (before.get(m.name) ?? 0)]));
    const every = (n: number): Record<string, number> => Object.fromEntries(lab.mids.map((m) => [m.name, n]));
    const request = ['rotate', '--all', '--force', '--canary', '0', '--concurrency', '1'];
    const before = await installs();
    const child = spawn(MIDCERT, ['--data-dir', lab.controller.dataDir, ...request], { stdio: 'ignore' });
    let history: any;
    for (let i = 0; i < 600; i++) {
      history = await json('history', '--limit', '1');
      const job = history.jobs[0];
      if (job?.state === 'running' && job.agents.filter((a: { state: string }) => a.state === 'succeeded').length >= 1) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => child.once('exit', r));
    const killedJob = history.jobs[0].id as number;
    // Right after the kill the job still belongs to the killed process: its lease has not lapsed
    // (serve.leaseSeconds), so another process refuses the MIDs, naming the owner, and changes nothing.
    const early = await midcert(...request);
    assert.equal(early.code, 3, early.stderr);
    if (Date.now() - killedAt < LEASE_SECONDS * 1000 - 500) {
      assert.match(early.stderr, new RegExp(`\\[JOB_CONFLICT\\] mid\\S+ is in job ${killedJob}, run by user:\\S+ \\(pid ${child.pid} on `));
    } else {
      // The lease lapsed while this run was planning: the job is abandoned, and still nothing changed.
      assert.match(early.stderr, /\[AGENT_BUSY\] .*its owner is gone/);
    }
    // Once the lease lapses the job is abandoned: the same request resumes it first, and its new job skips what that renewed.
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + LEASE_SECONDS * 1000 + 300 - Date.now())));
    const next = await json(...request);
    assert.equal(next.ok, true, JSON.stringify(next));
    assert.equal(next.summary.succeeded, 0, JSON.stringify(next.results));
    assert.equal(next.summary.skipped, MIDS);
    for (const r of next.results) assert.equal(r.reason, `already-renewed (by resumed job ${killedJob})`, JSON.stringify(r));
    const resumed = (await json('history', '--limit', '5')).jobs.find((j: { id: number }) => j.id === killedJob);
    assert.equal(resumed.state, 'succeeded', JSON.stringify(resumed));
    assert.ok(resumed.agents.every((a: { state: string }) => a.state === 'succeeded'));
    const afterRerun = await installs();
    assert.deepEqual(delta(afterRerun, before), every(1), 'the kill and the re-run installed every MID exactly once');
    for (const m of lab.mids) assert.equal((await eccAgent(m.name))?.status, 'Up');
    // With nothing left to resume, --force rotates every MID once more, and only once.
    const forced = await json(...request);
    assert.equal(forced.summary.succeeded, MIDS, JSON.stringify(forced.results));
    assert.deepEqual(delta(await installs(), afterRerun), every(1), '--force rotated each MID once more');
  });

  it('rotates the CA chain across the fleet: staged, swapped once, all Up, outage reported per MID', async () => {
    const next = await createLabCa('Rotated Issuing');
    const caDir = join(dir, 'new-ca');
    await saveLabCa(next, caDir);
    const cfgPath = join(lab.controller.dataDir, 'controller.yaml');
    const cfg = parseYaml(await readFile(cfgPath, 'utf8')) as { ca: Record<string, unknown> };
    cfg.ca = { type: 'local', dir: caDir };
    await writeFile(cfgPath, stringifyYaml(cfg));
    const report = await json('rotate-ca', '--chain', join(caDir, 'chain.pem'));
    assert.equal(report.ok, true, JSON.stringify(report.results.filter((r: { state: string }) => r.state !== 'succeeded')));
    assert.ok(report.swappedAt);
    assert.equal(Object.keys(report.outageSeconds).length, MIDS);
    const status = await json('status');
    for (const a of status.agents) {
      assert.equal(a.instanceStatus, 'Up');
      assert.match(a.certificate.issuer, /Rotated Issuing/);
    }
    assert.match(status.instance.caChain.subject, /Rotated Issuing/);
  });
});
