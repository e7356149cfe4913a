import { MidcertError, isMidcertError } from '../common/errors.js';
import { execProgram, redact, type ExecResult } from '../common/exec.js';
import type { MidPaths } from './mid-install.js';
import { execBatch, isBatchFile } from './windows/cmd.js';

/** The MID's own `manage-certificates` script (DESIGN.md §4), run from `agent/` as it requires. */
export interface ManageCertificates {
  /** `-a ALIAS FILE`: import a PEM bundle (certs + one PKCS#8 key) under the alias. */
  importBundle(alias: string, bundlePath: string): Promise<ScriptOutput>;
  /** `-m`: switch to mutual auth (removes the basic-auth parameters from config.xml). */
  enableMutualAuth(): Promise<ScriptOutput>;
  /**
   * `-b USER PASS`: back to basic auth (break-glass). The vendor interface takes the password on
   * the script's command line, so it is visible in the process list while the script runs: see
   * BASIC_AUTH_ARGV_WARNING and docs/agent-config.md.
   */
  revertToBasicAuth(username: string, password: string): Promise<ScriptOutput>;
}

export interface ScriptOutput {
  /** stdout and stderr together, secrets redacted, for results and logs. */
  output: string;
}

/**
 * Goes with every basic-auth revert that ran the script (the result, the agent log, the event
 * stream, and the error when the revert failed afterwards). Holds no secret.
 */
export const BASIC_AUTH_ARGV_WARNING = 'the password was passed to manage-certificates -b on its command line (the vendor interface allows no other way), '
  + 'so it was briefly visible to local users of this MID host in the process list (ps, /proc/<pid>/cmdline) while the script ran; '
  + 'rotate that password on the instance once the emergency is over';

/**
 * `-b` edits config.xml and nothing else; it needs seconds, not the minutes an import may. The
 * shorter bound keeps a hung script from showing the password in `ps` for long.
 */
export const BASIC_AUTH_TIMEOUT_MS = 30_000;

export interface ScriptRunnerOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /**
   * `-a` counts as done only when its output holds the documented success line (default true;
   * agent config `mid.requireImportSuccessLine`). See importOutcome().
   */
  requireImportSuccessLine?: boolean;
}

export function scriptRunner(paths: MidPaths, options: ScriptRunnerOptions): ManageCertificates {
  const run = async (args: string[], scrub: (text: string) => string = (text) => text, timeoutMs = options.timeoutMs): Promise<ScriptOutput> => {
    const flag = args[0] as string;
    let result: ExecResult;
    try {
      // Windows: manage-certificates.bat through cmd.exe /d /s /c with quoted arguments (agent/windows/cmd.ts).
      const exec = process.platform === 'win32' && isBatchFile(paths.script) ? execBatch : execProgram;
      result = await exec(paths.script, args, { cwd: paths.agentDir, timeoutMs, env: options.env });
    } catch (err) {
      // Node's own errors (e.g. an argument with a NUL byte) quote the arguments: say only what kind it was.
      throw new MidcertError('SCRIPT_FAILED', `manage-certificates ${flag} could not be started (${errorKind(err)})`);
    }
    const output = scrub(`${result.stdout}${result.stderr}`.trim());
    assertSucceeded(flag, result, output, timeoutMs);
    return { output };
  };
  return {
    importBundle: async (alias, bundlePath) => {
      const out = await run(['-a', alias, bundlePath]);
      assertOutputClean('-a', out.output);
      if (options.requireImportSuccessLine !== false && !hasImportSuccessLine(out.output, alias)) {
        throw new MidcertError('SCRIPT_FAILED', `manage-certificates -a exited 0 without its documented success line "Installed certificate with alias: ${alias} into the MID keystore."`, { detail: out.output });
      }
      return out;
    },
    enableMutualAuth: async () => {
      const out = await run(['-m']);
      assertOutputClean('-m', out.output);
      return out;
    },
    revertToBasicAuth: async (username, password) => {
      assertCredentials(username, password);
      const scrub = passwordScrubber(username, password);
      try {
        return await run(['-b', username, password], scrub, Math.min(options.timeoutMs, BASIC_AUTH_TIMEOUT_MS));
      } catch (err) {
        // Belt and braces: whatever was thrown leaves here without the password and without a cause.
        if (isMidcertError(err)) throw new MidcertError(err.code, scrub(err.message), err.detail === undefined ? {} : { detail: scrub(err.detail) });
        throw new MidcertError('SCRIPT_FAILED', `manage-certificates -b failed (${errorKind(err)})`);
      }
    },
  };
}

/** Refuses what the script cannot take anyway, without echoing either value. */
export function assertCredentials(username: string, password: string): void {
  if (!username || !password) throw new MidcertError('USAGE', 'username and password are required');
  if (/[\u0000-\u001f\u007f]/.test(username + password)) throw new MidcertError('USAGE', 'the username and password must not hold control characters');
}

/**
 * Removes the password from script output in the forms a script may print it: as given,
 * XML-escaped (config.xml), JSON-escaped, URL-encoded, and inside a Basic authorization value. A
 * password too short to redact without mangling the output withholds the output altogether.
 */
function passwordScrubber(username: string, password: string): (text: string) => string {
  const forms = [...new Set([
    password,
    password.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;'),
    password.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
    JSON.stringify(password).slice(1, -1),
    encodeURIComponent(password),
    Buffer.from(`${username}:${password}`).toString('base64'),
  ])];
  if (password.length < 3) return (text) => (text ? '(manage-certificates output withheld: it may hold the password)' : text);
  return (text) => redact(text, forms);
}

function errorKind(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,63}$/.test(code) ? code : 'unexpected error';
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

/**
 * The documented success line of `-a`: "If successful, you can see the following message:
 * `Installed certificate with alias: <your_identity_key_alias> into the MID keystore.`" —
 * SND:platform-security/client-access-example-5.md (docs/vendor-facts.md §8). The alias is compared
 * case-insensitively (Java keystore aliases are); a log prefix before the sentence is allowed.
 */
export function hasImportSuccessLine(output: string, alias: string): boolean {
  const want = alias.toLowerCase();
  return output.split(/\r?\n/).some((line) => {
    const match = /Installed certificate with alias: (\S+) into the MID keystore\./.exec(line);
    return match !== null && (match[1] ?? '').toLowerCase() === want;
  });
}

/**
 * What in the script's output means it failed whatever its exit code (exit codes are not
 * documented, vendor-facts §8): a "SEVERE" line (the vendor prints "SEVERE *** ERROR ***"), the
 * documented "Could not find valid private key" (SND:…/install-mid-mutual-auth.md), or a Java
 * exception ("An exception is thrown if the certificate chain fails validation." — same page).
 */
export const SCRIPT_FAILURE_MARKERS: readonly RegExp[] = [/SEVERE/, /Could not find valid private key/i, /[A-Za-z]*Exception\b/];

function assertOutputClean(flag: string, output: string): void {
  const hit = SCRIPT_FAILURE_MARKERS.map((m) => m.exec(output)).find((m) => m !== null);
  if (!hit) return;
  const line = output.split(/\r?\n/).find((l) => l.includes(hit[0]))?.trim() ?? hit[0];
  throw new MidcertError('SCRIPT_FAILED', `manage-certificates ${flag} exited 0 but reported a failure: ${line.slice(0, 200)}`, { detail: output });
}
