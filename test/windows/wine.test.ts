/**
 * The Windows single executable (dist/midcert-agent.exe, packaging/build-windows.mjs) run under
 * wine, as docs/windows.md describes: built from the sources (or $MIDCERT_WIN_EXE), a throwaway
 * WINEPREFIX (wineboot -i, winecfg -v win10), and the exe's stdio always on files (a Unix pipe as
 * a Windows process's stdin/stdout crashes Node with `open EBADF`).
 *
 *   npx mocha test/windows/wine.test.ts          (make test-windows; part of make test)
 *
 * Checked here: --version; csr with C:\ paths; bundle lint; bundle build from a PFX; status and
 * preflight (no false mode errors: on Windows the state dir is judged by its ACL, which wine cannot
 * show, so the finding is STATE_DIR_ACL_UNVERIFIED, a warning); install against a Windows MID tree
 * whose manage-certificates.bat is a test double recording its arguments, working directory and the
 * MID service state, with the MID home and the state dir holding spaces, `&` and `^`; the sc.exe
 * service manager on a test service (default name "ServiceNow MID Server_<name>"); the daemon on
 * a named pipe with status through it; service install|uninstall with a wrapper double. Not provable under wine (icacls is a stub, wine's cmd.exe
 * expands `%` recursively, services are wine's): see docs/windows.md.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWindows, hasWine, windowsNodeExe } from '../../packaging/build-windows.mjs';
import { ROOT } from '../../packaging/build-sea.mjs';
import { createLabCa, type LabCa } from '../../lab/lab-ca.js';
import { createMidHost } from '../../lab/mid/host.js';
import { PROFILES } from '../../pki/issue.js';
import { beginLine, PRIVATE_KEY_LABEL } from '../helpers/pem-text.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const MID_NAME = 'mid01';
const SERVICE = `ServiceNow MID Server_${MID_NAME}`;
// Characters cmd.exe treats specially, in the MID home and in the state dir (the bundle path).
const MID_HOME_WIN = 'C:\\ServiceNow\\MID Server & Co^1';
const STATE_WIN = 'C:\\ProgramData\\midcert\\state & co^x';
const PIPE = '\\\\.\\pipe\\midcert-agent-test';

interface WineRun { code: number | null; stdout: string; stderr: string }

describe('Windows executable under wine (make test-windows)', function () {
  this.timeout(300_000);
  let work: string;
  let prefix: string;
  let driveC: string;
  let exe: string;
  let nodeExe: string;
  let keepAlive: ChildProcess | undefined;
  let daemon: ChildProcess | undefined;
  let ca: LabCa;
  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, WINEPREFIX: prefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=', NODE_SKIP_PLATFORM_CHECK: '1' };
    delete e.NODE_OPTIONS;
    delete e.MIDCERT_AGENT_CONFIG;
    return e;
  };
  const unix = (winPath: string): string => join(driveC, winPath.replace(/^C:\\/i, '').split('\\').join('/'));

  /** wine <program> args, stdin /dev/null, stdout/stderr to files. */
  const wine = (program: string, args: string[], timeoutMs = 120_000): Promise<WineRun> => new Promise((resolve, reject) => {
    const out = join(work, `out-${Date.now()}-${Math.random().toString(16).slice(2)}`);
    const outFd = openSync(out, 'w');
    const errFd = openSync(`${out}.err`, 'w');
    const child = spawn('wine', [program, ...args], { env: env(), cwd: work, stdio: ['ignore', outFd, errFd] });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      closeSync(outFd);
      closeSync(errFd);
      resolve({ code, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(`${out}.err`, 'utf8') });
    });
  });
  const agent = (args: string[], timeoutMs?: number): Promise<WineRun> => wine(exe, args, timeoutMs);
  const sc = (args: string[]): Promise<WineRun> => wine('C:\\windows\\system32\\sc.exe', args, 30_000);

  before(async function () {
    if (!hasWine()) {
      if (process.env.MIDCERT_SKIP_WINE === '1') this.skip();
      throw new Error('wine is not installed: run make deps (scripts/deps.sh installs wine), or set MIDCERT_SKIP_WINE=1');
    }
    const t0 = Date.now();
    work = await mkdtemp(join(tmpdir(), 'midcert-wine-'));
    prefix = join(work, 'prefix');
    driveC = join(prefix, 'drive_c');
    const [built] = await Promise.all([
      process.env.MIDCERT_WIN_EXE ? Promise.resolve({ path: process.env.MIDCERT_WIN_EXE }) : buildWindows({ outDir: join(work, 'dist'), check: false }),
      (async () => {
        // First start of a prefix: wineboot -i once, then the Windows version Node 20 requires.
        const boot = spawnSync('wineboot', ['-i'], { env: env(), stdio: 'ignore', timeout: 180_000 });
        assert.equal(boot.status, 0, 'wineboot -i failed');
        spawnSync('winecfg', ['-v', 'win10'], { env: env(), stdio: 'ignore', timeout: 60_000 });
        // Until the boot's own processes are gone, the service database stays locked (sc.exe: 1055).
        spawnSync('wineserver', ['-w'], { env: env(), stdio: 'ignore', timeout: 60_000 });
      })(),
    ]);
    exe = built.path;
    nodeExe = (await windowsNodeExe()).path;
    // Wine stops services ~2 s after its last process exits: keep one process alive throughout.
    await mkdir(join(driveC, 'midcert-test'), { recursive: true });
    await copyFile(nodeExe, join(driveC, 'midcert-test', 'node.exe'));
    keepAlive = spawn('wine', ['C:\\midcert-test\\node.exe', '-e', 'setInterval(() => {}, 1 << 30)'], { env: env(), stdio: 'ignore' });
    ca = await createLabCa('midcert Wine');
    process.stderr.write(`      (exe built and wine prefix ready in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  });

  after(async () => {
    daemon?.kill('SIGKILL');
    keepAlive?.kill('SIGKILL');
    if (prefix) spawnSync('wineserver', ['-k'], { env: env(), stdio: 'ignore', timeout: 30_000 });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('--version prints the package version', async () => {
    const r = await agent(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
  });

  it('csr writes a key and a CSR to C:\\ paths and reports an ACL, not a mode', async () => {
    await mkdir(join(driveC, 'work'), { recursive: true });
    const r = await agent(['csr', '--subject', 'CN=mid01,O=Acme,OU=ITOM', '--key-out', 'C:\\work\\mid01.key', '--csr-out', 'C:\\work\\mid01.csr']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /key: C:\\work\\mid01\.key \(RSA 2048, ACL owner \+ SYSTEM \+ Administrators\)/);
    assert.ok((await readFile(join(driveC, 'work', 'mid01.key'), 'utf8')).startsWith(beginLine(PRIVATE_KEY_LABEL)), 'a PKCS#8 key');
    assert.match(await readFile(join(driveC, 'work', 'mid01.csr'), 'utf8'), /^-----BEGIN CERTIFICATE REQUEST-----/);
  });

  it('bundle lint: a complete bundle passes, a CSR fails with stable codes', async () => {
    const leaf = await ca.issueIdentity('CN=mid01,O=Acme,OU=ITOM', PROFILES.client, { days: 365 });
    await writeFile(join(driveC, 'work', 'good.pem'), leaf.certPem + ca.chainPem + leaf.keyPem);
    const good = await agent(['bundle', 'lint', 'C:\\work\\good.pem', '--json']);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    const bad = await agent(['bundle', 'lint', 'C:\\work\\mid01.csr', '--json']);
    assert.equal(bad.code, 1);
    const codes = (JSON.parse(bad.stdout) as { findings: { code: string }[] }).findings.map((f) => f.code);
    assert.ok(codes.includes('KEY_MISSING') && codes.includes('NO_CERTIFICATE'), codes.join(','));
  });

  it('bundle build from a PFX writes a bundle that lints clean', async () => {
    const leaf = await ca.issueIdentity('CN=mid01,O=Acme,OU=ITOM', PROFILES.client, { days: 365 });
    const dir = join(work, 'pfx');
    await mkdir(dir);
    await writeFile(join(dir, 'leaf.pem'), leaf.certPem);
    await writeFile(join(dir, 'key.pem'), leaf.keyPem);
    await writeFile(join(dir, 'chain.pem'), ca.chainPem);
    const p = spawnSync('openssl', ['pkcs12', '-export', '-in', join(dir, 'leaf.pem'), '-inkey', join(dir, 'key.pem'), '-certfile', join(dir, 'chain.pem'), '-passout', 'pass:pfx-pass', '-out', join(driveC, 'work', 'mid01 export.pfx')], { encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    const r = await agent(['bundle', 'build', '--pfx', 'C:\\work\\mid01 export.pfx', '--pfx-password', 'pfx-pass', '-o', 'C:\\work\\from-pfx.pem']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /wrote C:\\work\\from-pfx\.pem \(ACL owner/);
    const lint = await agent(['bundle', 'lint', 'C:\\work\\from-pfx.pem']);
    assert.equal(lint.code, 0, lint.stdout);
  });

  describe('a Windows MID tree', () => {
    let nextBundle: string;
    const calls = (): string => {
      const f = unix(`${MID_HOME_WIN}\\agent\\bin\\scripts\\calls.txt`);
      return existsSync(f) ? readFileSync(f, 'latin1') : '';
    };

    before(async () => {
      const first = await ca.issueIdentity(`CN=${MID_NAME},O=Acme,OU=ITOM`, PROFILES.client, { days: 30 });
      const host = await createMidHost({ home: unix(MID_HOME_WIN), name: MID_NAME, instanceUrl: 'https://127.0.0.1:9', auth: 'mutual', bundlePem: first.certPem + ca.chainPem + first.keyPem });
      // The keystore the import "makes": built on Linux by the lab's own script from the new bundle.
      const next = await ca.issueIdentity(`CN=${MID_NAME},O=Acme,OU=ITOM`, PROFILES.client, { days: 365 });
      nextBundle = next.certPem + ca.chainPem + next.keyPem;
      const after = await createMidHost({ home: join(work, 'after'), name: MID_NAME, instanceUrl: 'https://127.0.0.1:9', auth: 'mutual', bundlePem: next.certPem + ca.chainPem + next.keyPem });
      const scripts = join(host.agentDir, 'bin', 'scripts');
      await copyFile(after.keystorePath, join(scripts, 'after_keystore'));
      await rm(host.scriptPath, { force: true });
      // The test double: records its arguments, working directory and the service state, then
      // "imports" by copying the prepared keystore over agent\security\agent_keystore (a relative
      // path: it works only when the working directory is agent\).
      const bat = [
        '@echo off',
        '>>"%~dp0calls.txt" echo CALL',
        // Quoted: the values hold & and ^, which cmd would otherwise act on inside the double itself.
        '>>"%~dp0calls.txt" echo CWD="%CD%"',
        '>>"%~dp0calls.txt" echo ARGS=%*',
        '>>"%~dp0calls.txt" echo A1=["%~1"]',
        '>>"%~dp0calls.txt" echo A2=["%~2"]',
        '>>"%~dp0calls.txt" echo A3=["%~3"]',
        `sc query "${SERVICE}" >>"%~dp0calls.txt"`,
        'if not "%~1"=="-a" exit /b 0',
        'copy /y "bin\\scripts\\after_keystore" "security\\agent_keystore" >nul',
        'if errorlevel 1 exit /b 3',
        'echo Installed certificate with alias: %~2 into the MID keystore.',
        'exit /b 0',
        '',
      ].join('\r\n');
      await writeFile(join(scripts, 'manage-certificates.bat'), bat);
      // The default config path: %ProgramData%\midcert\agent.yaml.
      await mkdir(unix('C:\\ProgramData\\midcert'), { recursive: true });
      await writeFile(unix('C:\\ProgramData\\midcert\\agent.yaml'), [
        'mid:',
        `  home: '${MID_HOME_WIN}'`,
        '  scriptTimeoutSeconds: 60',
        'service:',
        '  manager: windows',
        '  timeoutSeconds: 30',
        'verify:',
        '  settleSeconds: 1',
        '  startTimeoutSeconds: 30',
        'preflight:',
        '  timeoutSeconds: 5',
        'listen:',
        `  socket: '${PIPE}'`,
        `stateDir: '${STATE_WIN}'`,
        '',
      ].join('\n'));
      // The MID's service: wine's spoolsv.exe is a real service program.
      // Right after wineboot the service database may not answer yet: retry for a while.
      const retry = async (args: string[]): Promise<void> => {
        let last: WineRun | undefined;
        for (let i = 0; i < 30; i++) {
          last = await sc(args);
          if (last.code === 0) return;
          await new Promise((r) => setTimeout(r, 1000));
        }
        assert.fail(`sc.exe ${args.join(' ')}: exit ${last?.code} ${last?.stdout}${last?.stderr}`);
      };
      await retry(['create', SERVICE, 'binPath=', 'C:\\windows\\system32\\spoolsv.exe']);
      await retry(['start', SERVICE]);
    });

    it('status --json reads the MID through the default config path and sees the service RUNNING', async () => {
      const r = await agent(['status', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout) as Record<string, any>;
      assert.equal(s.service.manager, 'windows');
      assert.equal(s.service.unit, SERVICE);
      assert.equal(s.service.active, true);
      assert.equal(s.keystore.aliasPresent, true);
      assert.equal(s.keystore.path, `${MID_HOME_WIN}\\agent\\security\\agent_keystore`);
      assert.equal(s.midName, MID_NAME);
    });

    it('preflight judges the state dir by ACL (no false mode error)', async () => {
      await mkdir(unix(STATE_WIN), { recursive: true });
      const r = await agent(['preflight', '--json']);
      const report = JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; severity: string; code: string; message: string }[] };
      const state = report.checks.find((c) => c.name === 'state-dir')!;
      assert.doesNotMatch(state.message, /mode 0/);
      assert.notEqual(state.severity, 'error', state.message);
      // wine has no Get-Acl: the ACL cannot be verified here, which is a warning, never an error.
      assert.equal(state.code, 'STATE_DIR_ACL_UNVERIFIED', state.message);
      const service = report.checks.find((c) => c.name === 'service')!;
      assert.equal(service.ok, true, service.message);
      assert.ok(!report.checks.some((c) => /mode 0[0-7]{3}/.test(c.message)), JSON.stringify(report.checks));
    });

    it('install runs manage-certificates.bat through cmd.exe from agent\\ with the MID stopped, then starts it', async () => {
      // The bundle the double "imports" is the one after_keystore holds.
      await writeFile(join(driveC, 'work', 'new bundle & more^.pem'), nextBundle);
      const r = await agent(['install', '--bundle', 'C:\\work\\new bundle & more^.pem', '--json'], 240_000);
      const log = calls();
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${log}`);
      const result = JSON.parse(r.stdout) as { ok: boolean; rolledBack: boolean };
      assert.equal(result.ok, true);
      const call = log.split('CALL').map((c) => c.trim()).filter(Boolean).find((c) => c.includes('A1=["-a"]'))!;
      assert.ok(call, log);
      assert.match(call, new RegExp(`CWD="${escape(`${MID_HOME_WIN}\\agent`)}"\\r?\\n`));
      assert.match(call, /A2=\["defaultsecuritykeypairhandle"\]/);
      // The bundle path in the state dir, with its space, & and ^, arrived as one argument.
      const a3 = /A3=\["(.*)"\]/.exec(call)?.[1] ?? '';
      assert.ok(a3.startsWith(`${STATE_WIN}\\`) && a3.endsWith('.pem'), a3);
      // The flags stay unquoted (a batch file compares %1 with -a textually).
      assert.match(call, /ARGS=-a defaultsecuritykeypairhandle "C:\\ProgramData\\midcert\\state & co\^x\\/);
      // The MID service was stopped while the script ran, and is running again.
      assert.match(call, /STATE\s*:\s*1\s+STOPPED/);
      const q = await sc(['query', SERVICE]);
      assert.match(q.stdout, /STATE\s*:\s*4\s+RUNNING/);
    });

    it('the sc.exe manager maps a missing service to a stable error code', async () => {
      const cfg = readFileSync(unix('C:\\ProgramData\\midcert\\agent.yaml'), 'utf8').replace('  manager: windows\n', "  manager: windows\n  unit: 'No Such MID Service'\n");
      await writeFile(unix('C:\\ProgramData\\midcert\\missing.yaml'), cfg);
      const r = await agent(['status', '--json', '-c', 'C:\\ProgramData\\midcert\\missing.yaml']);
      // wine's sc.exe exits 1 without printing error 1060; the service just reads as not active.
      if (r.code === 0) assert.equal((JSON.parse(r.stdout) as Record<string, any>).service.active, false);
      else assert.match(r.stderr, /\[(SERVICE_FAILED|CONFIG_INVALID)\]/);
    });

    it('run serves the named pipe and status goes through it', async () => {
      const out = join(work, 'daemon.out');
      const outFd = openSync(out, 'w');
      daemon = spawn('wine', [exe, 'run'], { env: env(), cwd: work, stdio: ['ignore', outFd, outFd] });
      closeSync(outFd);
      const until = Date.now() + 60_000;
      while (!readFileSync(out, 'utf8').includes('midcert-agent serving')) {
        if (Date.now() > until || daemon.exitCode !== null) assert.fail(`the daemon did not start: ${readFileSync(out, 'utf8')}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.doesNotMatch(readFileSync(out, 'utf8'), /chmod/);
      const r = await agent(['status', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout) as Record<string, any>;
      assert.equal(s.service.unit, SERVICE);
      daemon.kill('SIGKILL');
    });
  });
  it('service install|uninstall writes the WinSW XML and runs the wrapper (a node.exe double: WinSW needs .NET)', async () => {
    // The double is node.exe renamed to <name>-service.exe: "install" makes it run install.js from
    // its working directory (the exe's folder), which records the call.
    const binWin = 'C:\\svc test & co';
    const bin = unix(binWin);
    await mkdir(join(bin, 'double'), { recursive: true });
    await copyFile(exe, join(bin, 'midcert-agent.exe'));
    await copyFile(nodeExe, join(bin, 'double', 'winsw.exe'));
    await writeFile(join(bin, 'agent.yaml'), 'mid:\n  home: C:\\x\n');
    for (const verb of ['install', 'stop', 'uninstall']) {
      await writeFile(join(bin, `${verb}.js`), `require('fs').appendFileSync('calls.log', JSON.stringify({ exe: require('path').basename(process.execPath), verb: ${JSON.stringify(verb)}, cwd: process.cwd() }) + '\\n');\n`);
    }
    const inst = await wine(`${binWin}\\midcert-agent.exe`, ['service', 'install', '--config', `${binWin}\\agent.yaml`, '--wrapper', `${binWin}\\double\\winsw.exe`, '--json']);
    assert.equal(inst.code, 0, inst.stderr + inst.stdout);
    assert.deepEqual(JSON.parse(inst.stdout), { ok: true, name: 'midcert-agent', wrapper: `${binWin}\\midcert-agent-service.exe`, config: `${binWin}\\midcert-agent-service.xml`, action: 'install' });
    const xml = await readFile(join(bin, 'midcert-agent-service.xml'), 'utf8');
    assert.match(xml, /<executable>C:\\svc test &amp; co\\midcert-agent\.exe<\/executable>/);
    assert.match(xml, /<arguments>run --config &quot;C:\\svc test &amp; co\\agent\.yaml&quot;<\/arguments>/);
    const calls = (): { exe: string; verb: string; cwd: string }[] => readFileSync(join(bin, 'calls.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(calls(), [{ exe: 'midcert-agent-service.exe', verb: 'install', cwd: binWin }]);
    const un = await wine(`${binWin}\\midcert-agent.exe`, ['service', 'uninstall', '--json']);
    assert.equal(un.code, 0, un.stderr + un.stdout);
    assert.deepEqual(calls().map((c) => c.verb), ['install', 'stop', 'uninstall']);
    assert.equal(existsSync(join(bin, 'midcert-agent-service.xml')), false);
    assert.equal(existsSync(join(bin, 'midcert-agent-service.exe')), false);
    assert.equal(existsSync(join(bin, 'midcert-agent.exe')), true);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
