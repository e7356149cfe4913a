/**
 * agent/windows/service-install.ts (`midcert-agent service install|uninstall`, docs/windows.md):
 * the WinSW XML, the wrapper's argument arrays, where the files go, and the refusal off Windows.
 * The exe itself runs it under wine in test/windows/wine.test.ts (with a wrapper double: WinSW
 * needs .NET, which wine does not run here).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { MidcertError } from '../../common/errors.js';
import type { ExecResult } from '../../common/exec.js';
import { checkServiceName, installService, parseAccount, serviceXml, uninstallService, xmlEscape } from '../../agent/windows/service-install.js';
import { readWinswPin } from '../../packaging/build-windows.mjs';

const code = (c: string) => (err: unknown) => err instanceof MidcertError && err.code === c && !err.message.includes('\n');
const parse = (xml: string): Record<string, any> => new XMLParser({ ignoreAttributes: false, parseTagValue: false }).parse(xml).service;

describe('service install (WinSW) — agent/windows/service-install.ts', () => {
  let dir: string;
  let exe: string;
  let cfg: string;
  let wrapperSrc: string;
  let calls: { file: string; args: string[]; cwd: string }[];
  let answer: (args: string[]) => ExecResult;
  const run = async (file: string, args: string[], o: { cwd: string }): Promise<ExecResult> => { calls.push({ file, args, cwd: o.cwd }); return answer(args); };
  const ok = (): ExecResult => ({ code: 0, stdout: '', stderr: '', timedOut: false });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-svc-'));
    await mkdir(join(dir, 'Program Files', 'midcert'), { recursive: true });
    exe = join(dir, 'Program Files', 'midcert', 'midcert-agent.exe');
    await writeFile(exe, 'MZ agent');
    cfg = join(dir, 'Data & <Co>', 'agent.yaml');
    await mkdir(join(dir, 'Data & <Co>'));
    await writeFile(cfg, 'x: 1\n');
    wrapperSrc = join(dir, 'dl', 'winsw.exe');
    await mkdir(join(dir, 'dl'));
    await writeFile(wrapperSrc, 'MZ winsw');
    await writeFile(`${wrapperSrc}.config`, '<configuration/>');
    calls = [];
    answer = ok;
  });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('escapes &, <, > and quotes in every XML value', () => {
    assert.equal(xmlEscape(`a&b<c>d"e'f`), 'a&amp;b&lt;c&gt;d&quot;e&apos;f');
    const xml = serviceXml({ id: 'midcert-agent', displayName: 'A & B <"x">', executable: 'C:\\Program Files\\A&B\\midcert-agent.exe', configPath: 'C:\\Data <1>\\agent.yaml', workingDirectory: 'C:\\Program Files\\A&B' });
    assert.doesNotMatch(xml.replace(/&(amp|lt|gt|quot|apos);/g, ''), /&|<[^/!?a-z]/);
    const s = parse(xml);
    assert.equal(s.id, 'midcert-agent');
    assert.equal(s.name, 'A & B <"x">');
    assert.equal(s.executable, 'C:\\Program Files\\A&B\\midcert-agent.exe');
    assert.equal(s.arguments, 'run --config "C:\\Data <1>\\agent.yaml"');
    assert.equal(s.workingdirectory, 'C:\\Program Files\\A&B');
    assert.equal(s.log['@_mode'], 'roll');
    assert.equal(s.onfailure[0]['@_action'], 'restart');
    assert.ok(Number(/^(\d+) sec$/.exec(s.stoptimeout)?.[1]) >= 10, s.stoptimeout);
    assert.equal(s.serviceaccount, undefined, 'LocalSystem: no <serviceaccount>');
  });

  it('a path with a double quote is refused; a plain node.exe gets the script first', () => {
    assert.throws(() => serviceXml({ id: 'a', displayName: 'a', executable: 'C:\\a.exe', configPath: 'C:\\a"b.yaml', workingDirectory: 'C:\\' }), code('USAGE'));
    const s = parse(serviceXml({ id: 'a', displayName: 'a', executable: 'C:\\node\\node.exe', leadingArgs: ['C:\\src dir\\bin\\midcert-agent'], configPath: 'C:\\c.yaml', workingDirectory: 'C:\\' }));
    assert.equal(s.arguments, '"C:\\src dir\\bin\\midcert-agent" run --config "C:\\c.yaml"');
  });

  it('accounts: LocalSystem, NT AUTHORITY\\LocalService|NetworkService, NT SERVICE\\x; others are USAGE', () => {
    assert.equal(parseAccount(undefined), undefined);
    assert.equal(parseAccount('LocalSystem'), undefined);
    assert.deepEqual(parseAccount('NT SERVICE\\midcert-agent'), { domain: 'NT SERVICE', user: 'midcert-agent' });
    assert.deepEqual(parseAccount('nt authority\\NetworkService'), { domain: 'NT AUTHORITY', user: 'NetworkService' });
    assert.throws(() => parseAccount('CORP\\alice'), code('USAGE'));
    const s = parse(serviceXml({ id: 'a', displayName: 'a', executable: 'C:\\a.exe', configPath: 'C:\\c.yaml', workingDirectory: 'C:\\', account: { domain: 'NT SERVICE', user: 'a&b' } }));
    assert.deepEqual(s.serviceaccount, { domain: 'NT SERVICE', user: 'a&b', allowservicelogon: 'true' });
  });

  it('service names become file names: only letters, digits, ".", "_", "-"', () => {
    assert.equal(checkServiceName('midcert-agent_2.x'), 'midcert-agent_2.x');
    for (const bad of ['', '..\\x', 'a b', 'a/b', 'x.exe', '-a']) assert.throws(() => checkServiceName(bad), code('USAGE'), bad);
  });

  it('install: <name>-service.xml and .exe(.config) next to the agent exe, then "<name>-service.exe install" as an argument array', async () => {
    const r = await installService({ config: cfg, name: 'midcert-agent', wrapper: wrapperSrc, exe, platform: 'win32', run });
    const bin = join(dir, 'Program Files', 'midcert');
    assert.deepEqual(r, { ok: true, name: 'midcert-agent', wrapper: join(bin, 'midcert-agent-service.exe'), config: join(bin, 'midcert-agent-service.xml'), action: 'install' });
    assert.deepEqual(calls, [{ file: join(bin, 'midcert-agent-service.exe'), args: ['install'], cwd: bin }]);
    assert.equal(await readFile(exe, 'utf8'), 'MZ agent', 'the agent exe is untouched');
    assert.equal(await readFile(join(bin, 'midcert-agent-service.exe'), 'utf8'), 'MZ winsw');
    assert.equal(await readFile(join(bin, 'midcert-agent-service.exe.config'), 'utf8'), '<configuration/>');
    const s = parse(await readFile(join(bin, 'midcert-agent-service.xml'), 'utf8'));
    assert.equal(s.id, 'midcert-agent');
    assert.equal(s.executable, exe);
    assert.equal(s.arguments, `run --config "${cfg}"`);
  });

  it('install with another name copies the shipped winsw.exe to <name>-service.exe', async () => {
    await writeFile(join(dir, 'Program Files', 'midcert', 'winsw.exe'), 'MZ shipped');
    const r = await installService({ config: cfg, name: 'mc2', displayName: 'Mc & 2', exe, platform: 'win32', run });
    const bin = join(dir, 'Program Files', 'midcert');
    assert.equal(r.wrapper, join(bin, 'mc2-service.exe'));
    assert.equal(await readFile(join(bin, 'mc2-service.exe'), 'utf8'), 'MZ shipped');
    assert.equal(await readFile(exe, 'utf8'), 'MZ agent');
    const s = parse(await readFile(join(bin, 'mc2-service.xml'), 'utf8'));
    assert.equal(s.id, 'mc2');
    assert.equal(s.name, 'Mc & 2');
    assert.equal(s.executable, exe);
  });

  it('no wrapper next to the exe and no --wrapper: one line naming where it is expected', async () => {
    await assert.rejects(installService({ config: cfg, exe, platform: 'win32', run }), (err: unknown) => code('CONFIG_INVALID')(err) && (err as Error).message.includes(join(dir, 'Program Files', 'midcert', 'winsw.exe')) && /--wrapper/.test((err as Error).message));
    await assert.rejects(installService({ config: join(dir, 'nope.yaml'), wrapper: wrapperSrc, exe, platform: 'win32', run }), code('CONFIG_INVALID'));
    assert.equal(calls.length, 0);
  });

  it('a failing wrapper is SERVICE_FAILED with its first output line', async () => {
    answer = () => ({ code: 1, stdout: '\nWMI Operation failure: ServiceExists\nstack…', stderr: '', timedOut: false });
    await assert.rejects(installService({ config: cfg, wrapper: wrapperSrc, exe, platform: 'win32', run }), (err: unknown) => code('SERVICE_FAILED')(err) && /midcert-agent-service\.exe install failed \(exit 1\): WMI Operation failure: ServiceExists$/.test((err as Error).message));
  });

  it('uninstall: stop (not running is fine), uninstall, then the files are gone', async () => {
    await installService({ config: cfg, wrapper: wrapperSrc, exe, platform: 'win32', run });
    calls = [];
    answer = (args) => (args[0] === 'stop' ? { code: 1, stdout: 'The service has not been started.', stderr: '', timedOut: false } : ok());
    const r = await uninstallService({ exe, platform: 'win32', run });
    const bin = join(dir, 'Program Files', 'midcert');
    assert.equal(r.action, 'uninstall');
    assert.deepEqual(calls.map((c) => c.args), [['stop'], ['uninstall']]);
    for (const f of ['midcert-agent-service.exe', 'midcert-agent-service.exe.config', 'midcert-agent-service.xml']) assert.equal(existsSync(join(bin, f)), false, f);
    assert.equal(existsSync(exe), true);
  });

  it('uninstall: a real stop failure stops there', async () => {
    await installService({ config: cfg, wrapper: wrapperSrc, exe, platform: 'win32', run });
    answer = (args) => (args[0] === 'stop' ? { code: 5, stdout: 'Access is denied', stderr: '', timedOut: false } : ok());
    await assert.rejects(uninstallService({ exe, platform: 'win32', run }), code('SERVICE_FAILED'));
    assert.equal(existsSync(join(dir, 'Program Files', 'midcert', 'midcert-agent-service.xml')), true);
  });

  it('refuses off Windows with USAGE naming the systemd unit', async () => {
    await assert.rejects(installService({ config: cfg, exe, platform: 'linux', run }), (err: unknown) => code('USAGE')(err) && /for Windows hosts; on Linux use the systemd unit \(packaging\//.test((err as Error).message));
    await assert.rejects(uninstallService({ exe, platform: 'linux', run }), code('USAGE'));
    assert.equal(calls.length, 0);
  });

  it('pins winsw.exe from node-windows (npm integrity + sha256 per file)', async () => {
    const pin = await readWinswPin();
    assert.equal(pin.package, 'node-windows');
    assert.match(pin.files['package/bin/winsw/winsw.exe']!, /^[0-9a-f]{64}$/);
    assert.match(pin.files['package/bin/winsw/winsw.exe.config']!, /^[0-9a-f]{64}$/);
  });
});
