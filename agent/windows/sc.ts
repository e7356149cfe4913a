import { win32 } from 'node:path';
import { MidcertError, type ErrorCode } from '../../common/errors.js';
import { execProgram, type ExecResult } from '../../common/exec.js';

/**
 * The MID's Windows service through sc.exe (service.manager: windows). stop/start ask the Service
 * Control Manager and then poll `sc.exe query` until the service reports STOPPED / RUNNING, within
 * service.timeoutSeconds. Windows system error codes (sc.exe exits with them and prints
 * "FAILED <n>:") are mapped to our stable error codes by WINDOWS_SERVICE_ERRORS.
 */

/** The MID installer's service name: "ServiceNow MID Server_<name>" (agent\conf\wrapper-override.conf wrapper.name). */
export function defaultMidServiceName(midName: string): string {
  return `ServiceNow MID Server_${midName}`;
}

export type ScState = 'STOPPED' | 'START_PENDING' | 'STOP_PENDING' | 'RUNNING' | 'CONTINUE_PENDING' | 'PAUSE_PENDING' | 'PAUSED';

const STATES: Record<number, ScState> = { 1: 'STOPPED', 2: 'START_PENDING', 3: 'STOP_PENDING', 4: 'RUNNING', 5: 'CONTINUE_PENDING', 6: 'PAUSE_PENDING', 7: 'PAUSED' };

export interface WindowsServiceError {
  code: ErrorCode;
  meaning: string;
}

/** Windows system error codes sc.exe reports, and what they mean to us. */
export const WINDOWS_SERVICE_ERRORS: Readonly<Record<number, WindowsServiceError>> = {
  5: { code: 'SERVICE_FAILED', meaning: 'access denied (run the agent as LocalSystem or an administrator, or grant its account SERVICE_START/SERVICE_STOP on the MID service)' },
  1051: { code: 'SERVICE_FAILED', meaning: 'other running services depend on it' },
  1052: { code: 'SERVICE_FAILED', meaning: 'the control is not valid for this service' },
  1053: { code: 'SERVICE_FAILED', meaning: 'the service did not respond to the control request in time' },
  1055: { code: 'SERVICE_FAILED', meaning: 'the service database is locked' },
  1056: { code: 'SERVICE_FAILED', meaning: 'an instance of the service is already running' },
  1058: { code: 'SERVICE_FAILED', meaning: 'the service is disabled (start type Disabled)' },
  1060: { code: 'CONFIG_INVALID', meaning: 'the service is not installed (set service.unit to the MID service name)' },
  1061: { code: 'SERVICE_FAILED', meaning: 'the service cannot accept control messages now' },
  1062: { code: 'SERVICE_INACTIVE', meaning: 'the service has not been started' },
  1064: { code: 'SERVICE_FAILED', meaning: 'an exception occurred in the service when handling the control request' },
  1067: { code: 'SERVICE_FAILED', meaning: 'the process terminated unexpectedly' },
  1069: { code: 'SERVICE_FAILED', meaning: 'the service did not start due to a logon failure (its account or password)' },
  1072: { code: 'SERVICE_FAILED', meaning: 'the service has been marked for deletion' },
  1077: { code: 'SERVICE_FAILED', meaning: 'no attempts to start the service have been made since the last boot' },
};

/** The Windows error of a failed sc.exe run: its exit code, else the number after "FAILED". */
export function scErrorOf(result: Pick<ExecResult, 'code' | 'stdout' | 'stderr'>): number | undefined {
  const m = /FAILED\s+(\d+)/.exec(`${result.stdout}\n${result.stderr}`);
  if (m) return Number(m[1]);
  return result.code === 0 ? undefined : result.code;
}

/** The STATE line of `sc.exe query <name>`, e.g. "STATE              : 4  RUNNING". */
export function parseScState(output: string): ScState | undefined {
  const m = /^\s*STATE\s*:\s*(\d+)/m.exec(output);
  return m ? STATES[Number(m[1])] : undefined;
}

export function scError(verb: string, name: string, winError: number, output: string): MidcertError {
  const known = WINDOWS_SERVICE_ERRORS[winError];
  const meaning = known?.meaning ?? 'unexpected Windows error';
  return new MidcertError(known?.code ?? 'SERVICE_FAILED', `sc.exe ${verb} "${name}" failed with Windows error ${winError}: ${meaning}`, { detail: output.trim().slice(0, 2000) });
}

export interface ScOptions {
  timeoutMs: number;
  /** Poll interval while waiting for a state (default 500 ms). */
  pollMs?: number;
  /** sc.exe (default %SystemRoot%\System32\sc.exe). */
  scExe?: string;
  run?: (file: string, args: string[], options: { timeoutMs: number }) => Promise<ExecResult>;
}

export function scExePath(env: NodeJS.ProcessEnv = process.env): string {
  return win32.join(env.SystemRoot ?? env.windir ?? 'C:\\Windows', 'System32', 'sc.exe');
}

export interface WindowsService {
  readonly manager: 'windows';
  readonly unit: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  isActive(): Promise<boolean>;
  query(): Promise<ScState>;
}

export function windowsServiceManager(name: string, options: ScOptions): WindowsService {
  const sc = options.scExe ?? scExePath();
  const run = options.run ?? execProgram;
  const pollMs = options.pollMs ?? 500;
  const call = async (args: string[], timeoutMs: number): Promise<ExecResult> => {
    const r = await run(sc, args, { timeoutMs: Math.max(1000, timeoutMs) });
    if (r.timedOut) throw new MidcertError('SERVICE_FAILED', `sc.exe ${args[0]} "${name}" did not answer within ${Math.round(timeoutMs / 1000)} s`);
    return r;
  };
  const query = async (timeoutMs = options.timeoutMs): Promise<ScState> => {
    const r = await call(['query', name], timeoutMs);
    const state = parseScState(r.stdout);
    if (state) return state;
    throw scError('query', name, scErrorOf(r) ?? -1, `${r.stdout}${r.stderr}`);
  };
  const waitFor = async (want: ScState, verb: string, deadline: number): Promise<void> => {
    let last: ScState | undefined;
    for (;;) {
      last = await query(Math.max(1000, deadline - Date.now()));
      if (last === want) return;
      if (Date.now() >= deadline) {
        throw new MidcertError('SERVICE_FAILED', `${verb} of "${name}": still ${last} after ${Math.round(options.timeoutMs / 1000)} s (waiting for ${want})`);
      }
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
    }
  };
  const control = async (verb: 'start' | 'stop', want: ScState, harmless: number): Promise<void> => {
    const deadline = Date.now() + options.timeoutMs;
    const r = await call([verb, name], options.timeoutMs);
    const err = scErrorOf(r);
    // 1056 on start (already running) and 1062 on stop (not started) leave the state we want. Any
    // other failure counts only when the service is not in that state anyway (wine's sc.exe exits 1
    // with no error number for both).
    if (err !== undefined && err !== harmless) {
      const failure = scError(verb, name, err, `${r.stdout}${r.stderr}`);
      if (err === 1060 || (await query().catch(() => undefined)) !== want) throw failure;
      return;
    }
    await waitFor(want, verb, deadline);
  };
  return {
    manager: 'windows',
    unit: name,
    start: () => control('start', 'RUNNING', 1056),
    stop: () => control('stop', 'STOPPED', 1062),
    isActive: async () => (await query()) === 'RUNNING',
    query: () => query(),
  };
}
