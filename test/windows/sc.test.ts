/**
 * service.manager: windows (agent/windows/sc.ts) with a scripted sc.exe: the calls, waiting for
 * STOPPED/RUNNING within the timeout, and Windows error codes mapped to our stable codes. The same
 * manager runs against a real (wine) service in test/windows/wine.test.ts.
 */
import assert from 'node:assert/strict';
import { parseAgentConfig } from '../../agent/config.js';
import { WINDOWS_SERVICE_ERRORS, defaultMidServiceName, parseScState, scErrorOf, windowsServiceManager } from '../../agent/windows/sc.js';
import type { ExecResult } from '../../common/exec.js';
import { isMidcertError } from '../../common/errors.js';

const query = (state: number, name: string): ExecResult => ({ code: 0, timedOut: false, stderr: '', stdout: `\r\nSERVICE_NAME: ${name}\r\n        TYPE               : 10  WIN32_OWN_PROCESS\r\n        STATE              : ${state}  ${['', 'STOPPED', 'START_PENDING', 'STOP_PENDING', 'RUNNING'][state]}\r\n` });
const failed = (code: number, verb = 'OpenService'): ExecResult => ({ code, timedOut: false, stderr: '', stdout: `[SC] ${verb} FAILED ${code}:\r\n\r\nThe text.\r\n` });

function scripted(name: string, states: number[], controls: Record<string, ExecResult> = {}) {
  const calls: string[][] = [];
  let i = 0;
  const run = async (file: string, args: string[]): Promise<ExecResult> => {
    calls.push([file, ...args]);
    if (args[0] === 'query') return query(states[Math.min(i++, states.length - 1)]!, name);
    return controls[args[0]!] ?? { code: 0, stdout: '', stderr: '', timedOut: false };
  };
  return { calls, run };
}

describe('windows/sc: the sc.exe service manager', () => {
  const NAME = 'ServiceNow MID Server_mid01';

  it('defaults to the MID installer\'s service name', () => {
    assert.equal(defaultMidServiceName('mid01'), NAME);
  });

  it('stop: sc.exe stop, then polls query until STOPPED', async () => {
    const s = scripted(NAME, [3, 3, 1]);
    await windowsServiceManager(NAME, { timeoutMs: 5000, pollMs: 1, scExe: 'C:\\Windows\\System32\\sc.exe', run: s.run }).stop();
    assert.deepEqual(s.calls[0], ['C:\\Windows\\System32\\sc.exe', 'stop', NAME]);
    assert.equal(s.calls.filter((c) => c[1] === 'query').length, 3);
  });

  it('start waits for RUNNING; isActive is RUNNING only', async () => {
    const s = scripted(NAME, [2, 4, 4, 1]);
    const m = windowsServiceManager(NAME, { timeoutMs: 5000, pollMs: 1, run: s.run });
    await m.start();
    assert.equal(await m.isActive(), true);
    assert.equal(await m.isActive(), false);
    assert.equal(m.manager, 'windows');
    assert.equal(m.unit, NAME);
  });

  it('a service that never reaches the state fails with SERVICE_FAILED after the timeout', async () => {
    const s = scripted(NAME, [3]);
    await assert.rejects(windowsServiceManager(NAME, { timeoutMs: 300, pollMs: 20, run: s.run }).stop(), (err: unknown) => isMidcertError(err) && err.code === 'SERVICE_FAILED' && /still STOP_PENDING/.test(err.message));
  });

  it('1062 on stop and 1056 on start are harmless', async () => {
    await windowsServiceManager(NAME, { timeoutMs: 1000, pollMs: 1, run: scripted(NAME, [1], { stop: failed(1062, 'ControlService') }).run }).stop();
    await windowsServiceManager(NAME, { timeoutMs: 1000, pollMs: 1, run: scripted(NAME, [4], { start: failed(1056, 'StartService') }).run }).start();
  });

  it('maps Windows errors to stable codes: 1060 not installed → CONFIG_INVALID, 1058 disabled / 5 access denied → SERVICE_FAILED', async () => {
    const notInstalled = { code: 1060, timedOut: false, stderr: '', stdout: '[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\r\n\r\nThe specified service does not exist as an installed service.\r\n' };
    const run1060 = async (): Promise<ExecResult> => notInstalled;
    await assert.rejects(windowsServiceManager(NAME, { timeoutMs: 1000, run: run1060 }).isActive(), (err: unknown) => isMidcertError(err) && err.code === 'CONFIG_INVALID' && /Windows error 1060/.test(err.message));
    await assert.rejects(windowsServiceManager(NAME, { timeoutMs: 1000, run: run1060 }).stop(), (err: unknown) => isMidcertError(err) && err.code === 'CONFIG_INVALID');
    await assert.rejects(windowsServiceManager(NAME, { timeoutMs: 1000, pollMs: 1, run: scripted(NAME, [1], { start: failed(1058, 'StartService') }).run }).start(), (err: unknown) => isMidcertError(err) && err.code === 'SERVICE_FAILED' && /disabled/.test(err.message));
    await assert.rejects(windowsServiceManager(NAME, { timeoutMs: 1000, pollMs: 1, run: scripted(NAME, [4], { stop: failed(5, 'OpenService') }).run }).stop(), (err: unknown) => isMidcertError(err) && err.code === 'SERVICE_FAILED' && /access denied/.test(err.message));
    assert.equal(WINDOWS_SERVICE_ERRORS[1062]?.code, 'SERVICE_INACTIVE');
  });

  it('parses sc.exe output', () => {
    assert.equal(parseScState(query(4, NAME).stdout), 'RUNNING');
    assert.equal(parseScState('nothing'), undefined);
    assert.equal(scErrorOf(failed(1060)), 1060);
    assert.equal(scErrorOf({ code: 1, stdout: '', stderr: '' }), 1);
    assert.equal(scErrorOf({ code: 0, stdout: '', stderr: '' }), undefined);
  });

  it('config: service.manager windows takes a service name with spaces; other managers do not', () => {
    const cfg = parseAgentConfig(`mid:\n  home: /opt/mid\nservice:\n  manager: windows\n  unit: '${NAME}'\n`, '/etc/midcert/agent.yaml');
    assert.equal(cfg.service.unit, NAME);
    assert.throws(() => parseAgentConfig("mid:\n  home: /opt/mid\nservice:\n  manager: systemd\n  unit: 'my mid'\n", '/etc/midcert/agent.yaml'));
  });
});
