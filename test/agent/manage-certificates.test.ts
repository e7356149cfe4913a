import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasImportSuccessLine, scriptRunner } from '../../agent/manage-certificates.js';
import type { MidPaths } from '../../agent/mid-install.js';
import { MidcertError } from '../../common/errors.js';

/**
 * When the agent trusts `manage-certificates -a`: exit 0 AND the documented success line
 * "Installed certificate with alias: <alias> into the MID keystore."
 * (SND:platform-security/client-access-example-5.md, docs/vendor-facts.md §8), and nothing in the
 * output that says otherwise (SEVERE, "Could not find valid private key" —
 * SND:…/install-mid-mutual-auth.md, a Java exception). Exit codes are not documented.
 */
describe('manage-certificates output: the documented success line, and failures whatever the exit code', () => {
  let dir: string;
  let paths: MidPaths;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-mc-'));
    const agentDir = join(dir, 'agent');
    await mkdir(join(agentDir, 'bin', 'scripts'), { recursive: true });
    const script = join(agentDir, 'bin', 'scripts', 'manage-certificates.sh');
    // Prints $OUT (with \n escapes) and exits $CODE.
    await writeFile(script, '#!/bin/sh\nprintf "%b" "$OUT"\nexit "${CODE:-0}"\n');
    await chmod(script, 0o755);
    paths = { home: dir, agentDir, configXml: join(agentDir, 'config.xml'), keystore: join(agentDir, 'security', 'agent_keystore'), script, log: join(agentDir, 'logs', 'agent0.log.0') };
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  const importWith = async (out: string, code = 0, alias = 'defaultsecuritykeypairhandle'): Promise<MidcertError | undefined> => {
    const runner = scriptRunner(paths, { timeoutMs: 10_000, env: { ...process.env, OUT: out, CODE: String(code) } });
    return runner.importBundle(alias, '/tmp/bundle.pem').then(() => undefined, (err: unknown) => {
      assert.ok(err instanceof MidcertError, String(err));
      return err;
    });
  };

  it('exit 0 with the documented line succeeds; the alias is compared case-insensitively (client-access-example-5.md)', async () => {
    assert.equal(await importWith('Installed certificate with alias: DefaultSecurityKeyPairHandle into the MID keystore.\n'), undefined);
    assert.equal(await importWith('2024-01-01 INFO main Installed certificate with alias: defaultsecuritykeypairhandle into the MID keystore.\n'), undefined, 'a log prefix is fine');
  });

  it('exit 0 without the line is a failure, with the script output as detail', async () => {
    const err = await importWith('Certificate chain and private key imported\n');
    assert.equal(err?.code, 'SCRIPT_FAILED');
    assert.match(err?.message ?? '', /without its documented success line "Installed certificate with alias: defaultsecuritykeypairhandle into the MID keystore\."/);
    assert.equal(err?.detail, 'Certificate chain and private key imported');
  });

  it('the line for another alias does not count', async () => {
    assert.equal((await importWith('Installed certificate with alias: midwss into the MID keystore.\n'))?.code, 'SCRIPT_FAILED');
    assert.equal(hasImportSuccessLine('Installed certificate with alias: midwss into the MID keystore.', 'defaultsecuritykeypairhandle'), false);
  });

  it('exit 0 with the line but a SEVERE line, "Could not find valid private key" or an exception is a failure (install-mid-mutual-auth.md)', async () => {
    const ok = 'Installed certificate with alias: defaultsecuritykeypairhandle into the MID keystore.\n';
    for (const bad of ['- main SEVERE *** ERROR *** Could not find valid private key\n', 'Could not find valid private key\n', 'java.security.cert.CertificateException: chain validation failed\n']) {
      const err = await importWith(bad + ok);
      assert.equal(err?.code, 'SCRIPT_FAILED', bad);
      assert.match(err?.message ?? '', /exited 0 but reported a failure/);
      assert.ok(err?.detail?.includes(bad.trim()), err?.detail);
    }
  });

  it('a non-zero exit stays a failure even with the line', async () => {
    const err = await importWith('Installed certificate with alias: defaultsecuritykeypairhandle into the MID keystore.\n', 1);
    assert.match(err?.message ?? '', /exited 1/);
  });

  it('-m with a SEVERE line is a failure even on exit 0', async () => {
    const runner = scriptRunner(paths, { timeoutMs: 10_000, env: { ...process.env, OUT: 'SEVERE *** ERROR *** Cannot write config.xml\n', CODE: '0' } });
    await assert.rejects(runner.enableMutualAuth(), (e: unknown) => e instanceof MidcertError && e.code === 'SCRIPT_FAILED');
  });

  it('requireImportSuccessLine: false (agent config mid.requireImportSuccessLine) accepts exit 0 without the line', async () => {
    const runner = scriptRunner(paths, { timeoutMs: 10_000, requireImportSuccessLine: false, env: { ...process.env, OUT: 'imported\n', CODE: '0' } });
    await runner.importBundle('defaultsecuritykeypairhandle', '/tmp/bundle.pem');
  });
});
