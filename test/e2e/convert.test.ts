import assert from 'node:assert/strict';
import { request } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run, type RunResult } from '../helpers/run.js';

/**
 * Issue 11 item 6, the operator's way: `midcert-lab up --auth basic` starts a freshly installed
 * MID (credentials in config.xml, its own self-signed defaultsecuritykeypairhandle, validated) and
 * `midcert convert` takes it to mutual TLS, Up. Vendor flow (install-mid-mutual-auth.md steps 8–13,
 * mid-unified-keystore.md): invalidate the validated MID first — the queued delete_mid_keypair must
 * be processed before the new pair is imported, or it would delete the new certificate — then
 * stop, import, `-m`, start.
 */
const LAB = resolve('bin/midcert-lab');
const MIDCERT = resolve('bin/midcert');

interface Lab {
  auth: string;
  instance: { url: string; username: string; password: string };
  mids: { name: string; home: string; auth: string }[];
  caFile: string;
  controller: { dataDir: string };
}

describe('end to end: a freshly installed basic-auth MID converted to mutual TLS', function () {
  this.timeout(300_000);
  let dir: string;
  let lab: Lab;
  const midcert = (...args: string[]): Promise<RunResult> => run(MIDCERT, ['--data-dir', lab.controller.dataDir, ...args], { timeoutMs: 240_000 });
  const table = async (path: string): Promise<Record<string, string>[]> => {
    const ca = await readFile(lab.caFile, 'utf8');
    return new Promise((done, reject) => {
      request(new URL(path, lab.instance.url), { ca, headers: { Authorization: `Basic ${Buffer.from(`${lab.instance.username}:${lab.instance.password}`).toString('base64')}`, Accept: 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => done((JSON.parse(body) as { result: Record<string, string>[] }).result));
      }).on('error', reject).end();
    });
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-e2e-convert-'));
    const up = await run(LAB, ['up', '--dir', dir, '--mids', '1', '--auth', 'basic', '--with-agents', '--time-scale', '0.0125', '--json'], { timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr);
    lab = JSON.parse(up.stdout) as Lab;
  });

  after(async () => {
    if (dir) await run(LAB, ['down', '--dir', dir], { timeoutMs: 120_000 });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('starts the MID as freshly installed: credentials in config.xml, its own self-signed pair, validated', async () => {
    assert.equal(lab.auth, 'basic');
    const configXml = await readFile(join(lab.mids[0]!.home, 'agent', 'config.xml'), 'utf8');
    assert.match(configXml, /name="mid\.instance\.username" value="[^"]+"/);
    assert.match(configXml, /name="mid\.instance\.password"/);
    const [agent] = await table('/api/now/table/ecc_agent?sysparm_query=name=mid01');
    assert.equal(agent?.validated, 'true');
    const status = JSON.parse((await midcert('status', '--json')).stdout) as { agents: { name: string; certificate?: { selfSigned?: boolean } }[] };
    assert.ok(status.agents.length === 1, JSON.stringify(status));
  });

  it('preflight does not call the fresh MID\'s own self-signed pair an error', async () => {
    const res = await midcert('preflight', '--json');
    const report = JSON.parse(res.stdout) as { agents: { name: string; checks: { name: string; ok: boolean; severity: string; code: string; message: string }[] }[] };
    const checks = report.agents[0]?.checks ?? [];
    const keystore = checks.find((c) => c.name === 'keystore');
    assert.equal(keystore?.code, 'MID_SELF_SIGNED', JSON.stringify(checks));
    assert.equal(keystore?.ok, true);
    assert.notEqual(keystore?.severity, 'error');
    assert.match(checks.find((c) => c.name === 'config')?.message ?? '', /midcert convert --agent/);
  });

  it('midcert convert takes it to mutual TLS, Up, invalidating it before the import', async () => {
    const res = await midcert('convert', '--agent', 'mid01', '--json');
    assert.equal(res.code, 0, res.stderr);
    assert.equal((JSON.parse(res.stdout) as { ok: boolean }).ok, true);
    const configXml = await readFile(join(lab.mids[0]!.home, 'agent', 'config.xml'), 'utf8');
    assert.doesNotMatch(configXml, /mid\.instance\.password/, 'manage-certificates -m removed the basic credentials');
    const [agent] = await table('/api/now/table/ecc_agent?sysparm_query=name=mid01');
    assert.equal(agent?.status, 'Up');
    // The invalidation's command was delivered and answered before the certificate went in.
    const commands = await table('/api/now/table/ecc_queue?sysparm_query=source=delete_mid_keypair');
    assert.ok(commands.some((c) => c.state === 'processed'), JSON.stringify(commands));
    const log = await readFile(join(lab.mids[0]!.home, 'agent', 'logs', 'agent0.log.0'), 'utf8');
    const deleted = log.indexOf('delete_mid_keypair');
    const mutual = log.lastIndexOf('Mutual authentication: client certificate');
    assert.ok(deleted >= 0 && mutual > deleted, 'the key pair was deleted before the MID started on its new certificate');
    const status = JSON.parse((await midcert('status', '--json')).stdout) as { agents: { name: string; certificate?: { issuer?: string } }[] };
    assert.match(JSON.stringify(status.agents[0]), /midcert Lab Issuing CA/);
  });
});
