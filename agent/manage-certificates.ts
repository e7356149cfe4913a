import { MidcertError } from '../common/errors.js';
import { execProgram, redact, type ExecResult } from '../common/exec.js';
import type { MidPaths } from './mid-install.js';

/** The MID's own `manage-certificates` script (DESIGN.md §4), run from `agent/` as it requires. */
export interface ManageCertificates {
  /** `-a ALIAS FILE`: import a PEM bundle (certs + one PKCS#8 key) under the alias. */
  importBundle(alias: string, bundlePath: string): Promise<ScriptOutput>;
  /** `-m`: switch to mutual auth (removes the basic-auth parameters from config.xml). */
  enableMutualAuth(): Promise<ScriptOutput>;
  /** `-b USER PASS`: back to basic auth (break-glass). */
  revertToBasicAuth(username: string, password: string): Promise<ScriptOutput>;
}

export interface ScriptOutput {
  /** stdout and stderr together, secrets redacted, for results and logs. */
  output: string;
}

export function scriptRunner(paths: MidPaths, options: { timeoutMs: number; env?: NodeJS.ProcessEnv }): ManageCertificates {
  const run = async (args: string[], secrets: string[] = []): Promise<ScriptOutput> => {
    const result = await execProgram(paths.script, args, { cwd: paths.agentDir, timeoutMs: options.timeoutMs, env: options.env });
    const output = redact(`${result.stdout}${result.stderr}`.trim(), secrets);
    assertSucceeded(args[0] as string, result, output, options.timeoutMs);
    return { output };
  };
  return {
    importBundle: (alias, bundlePath) => run(['-a', alias, bundlePath]),
    enableMutualAuth: () => run(['-m']),
    revertToBasicAuth: (username, password) => run(['-b', username, password], [password]),
  };
}

function assertSucceeded(flag: string, result: ExecResult, output: string, timeoutMs: number): void {
  if (result.timedOut) {
    throw new MidcertError('SCRIPT_TIMEOUT', `manage-certificates ${flag} did not finish within ${Math.round(timeoutMs / 1000)} s`, { detail: output });
  }
  if (result.code !== 0) {
    const hint = /Could not find valid private key/i.test(output) ? ' (Could not find valid private key)' : '';
    throw new MidcertError('SCRIPT_FAILED', `manage-certificates ${flag} exited ${result.code}${hint}`, { detail: output });
  }
}
