import { win32 } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { execProgram, type ExecOptions, type ExecResult } from '../../common/exec.js';

/**
 * Running a `.bat` on Windows. Node >= 20.12.2 (CVE-2024-27980) refuses to execFile a batch file
 * without a shell (`spawn EINVAL`), and `shell: true` would hand cmd.exe a command line built by
 * naive joining. So the agent runs `cmd.exe /d /s /c "<line>"` itself, with the line built here
 * and passed verbatim (windowsVerbatimArguments), never a shell string made of untrusted input:
 *
 * - `/d` skips AutoRun commands from the registry; `/s` makes cmd strip exactly the outer quotes.
 * - Each argument made only of safe characters goes as it is (a batch file compares `%1` with
 *   `-a` textually, so flags must stay unquoted); any other is put in double quotes, inside which
 *   cmd treats `&`, `|`, `<`, `>`, `^`, `(`, `)`, spaces, `,`, `;` and `=` literally.
 * - `%` is expanded by cmd even inside quotes, and cmd has no escape for it on a command line
 *   (`^%` is literal inside quotes; the `%%cd:~,%` trick of Rust's std works on real cmd.exe but
 *   not on wine's). So an argument holding `%` is not put on the line at all: it travels in the
 *   environment variable MIDCERT_BATCH_ARG_<n> and the line says `"%MIDCERT_BATCH_ARG_<n>%"`.
 *   cmd expands that once and does not expand the result again, so the value arrives verbatim
 *   (`&`, `^` and the rest are still inside the quotes). `!` is literal because cmd starts with
 *   delayed expansion off (the agent never passes /v:on; a machine-wide DelayedExpansion registry
 *   default would change that, which docs/windows.md warns about).
 * - A double quote, a line break, NUL or another control character cannot be passed to a batch
 *   file safely at all: such an argument is refused (USAGE), never escaped and hoped for.
 */

/** Arguments passed unquoted: what a batch file can compare textually (`-a`, aliases, plain paths). */
const SAFE_ARG = /^[A-Za-z0-9_.:\\/+@#$~{}[\]-]+$/;
/** Refused outright: quotes and control characters (incl. CR/LF, which end a cmd line). */
const UNPASSABLE = /["\u0000-\u001f\u007f]/;

export const BATCH_ARG_ENV = 'MIDCERT_BATCH_ARG_';

/**
 * One argument as it goes on the cmd.exe line. `index` names the environment variable for an
 * argument holding `%` (its value then goes in `env`).
 */
export function quoteCmdArg(arg: string, index = 0, env: Record<string, string> = {}): string {
  if (UNPASSABLE.test(arg)) {
    throw new MidcertError('USAGE', 'an argument for a Windows batch file holds a double quote or a control character, which cmd.exe cannot pass safely');
  }
  if (arg.includes('%')) {
    const name = `${BATCH_ARG_ENV}${index}`;
    env[name] = arg;
    return `"%${name}%"`;
  }
  return SAFE_ARG.test(arg) ? arg : `"${arg}"`;
}

/** The text after `cmd.exe /d /s /c`: the whole line in one pair of outer quotes that /s strips. */
export function cmdLine(script: string, args: readonly string[], env: Record<string, string> = {}): string {
  return `"${[script, ...args].map((a, i) => quoteCmdArg(a, i, env)).join(' ')}"`;
}

/** %SystemRoot%\System32\cmd.exe (not whatever `cmd` PATH finds first). */
export function cmdExePath(env: NodeJS.ProcessEnv = process.env): string {
  const root = env.SystemRoot ?? env.SYSTEMROOT ?? env.windir ?? 'C:\\Windows';
  return win32.join(root, 'System32', 'cmd.exe');
}

/**
 * What execFile runs (with windowsVerbatimArguments): cmd.exe, `['/d', '/s', '/c', line]`, and the
 * environment with the MIDCERT_BATCH_ARG_<n> values of arguments that hold `%`.
 */
export function batchInvocation(script: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const extra: Record<string, string> = {};
  const line = cmdLine(script, args, extra);
  const base = Object.fromEntries(Object.entries(env).filter(([k]) => !k.toUpperCase().startsWith(BATCH_ARG_ENV)));
  return { file: cmdExePath(env), args: ['/d', '/s', '/c', line], env: { ...base, ...extra } };
}

/**
 * A script inside the working directory goes on the line relative to it (`.\bin\scripts\x.bat`
 * from agent\): the MID home's own characters (spaces, `&`, `%` in "C:\My MID%1") then never
 * reach cmd's parser. cwd is set by CreateProcess, not by the command line.
 */
export function scriptForLine(script: string, cwd: string | undefined): string {
  if (!cwd) return script;
  const rel = win32.relative(cwd, script);
  if (rel === '' || rel.startsWith('..') || win32.isAbsolute(rel)) return script;
  return `.\\${rel}`;
}

export function isBatchFile(path: string): boolean {
  return /\.(bat|cmd)$/i.test(path);
}

/**
 * Like common/exec.ts execProgram (resolves always; exit 127 for a missing program), for a batch
 * file through cmd.exe as described above.
 */
export function execBatch(script: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const inv = batchInvocation(scriptForLine(script, options.cwd), args, options.env ?? process.env);
  return execProgram(inv.file, inv.args, { ...options, env: inv.env, windowsVerbatimArguments: true });
}
