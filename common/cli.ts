import { Command, CommanderError } from 'commander';
import { readBoundedFile } from './bounded-read.js';
import { MidcertError, isMidcertError, type ErrorCode } from './errors.js';
import { LIMITS } from './limits.js';

/** Exit codes shared by every midcert command; documented in each program's --help. */
export const EXIT = { ok: 0, findings: 1, usage: 2, input: 3, io: 4, unreachable: 5, internal: 70 } as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0   success
  1   the checked bundle/keystore has error findings, or a bundle would not lint clean
  2   bad command-line usage
  3   bad input: unparsable file, wrong password, input over its size bound
  4   a file cannot be read or written
  5   a peer (instance, CA, agent) is unreachable or timed out
  70  internal error (a bug: please report it)

Errors print one line on stderr: "<program>: error [CODE] message".`;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'USAGE': return EXIT.usage;
    case 'INPUT_UNREADABLE':
    case 'OUTPUT_FAILED': return EXIT.io;
    case 'BUNDLE_INVALID': return EXIT.findings;
    case 'INTERNAL': return EXIT.internal;
    case 'UNAVAILABLE':
    case 'DEADLINE_EXCEEDED':
    case 'INSTANCE_UNAVAILABLE':
    case 'INSTANCE_TIMEOUT':
    case 'INSTANCE_UNREACHABLE':
    case 'INSTANCE_RATE_LIMITED':
    case 'STORE_UNREACHABLE': return EXIT.unreachable;
    default: return EXIT.input;
  }
}

/**
 * Runs a commander program with our error contract: one stderr line with a stable code and a
 * documented exit code; stack traces only with MIDCERT_DEBUG=1.
 */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  program.exitOverride();
  program.configureOutput({ outputError: () => undefined });
  for (const sub of allCommands(program)) {
    sub.exitOverride();
    sub.configureOutput({ outputError: () => undefined });
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    const code = reportError(program.name(), err);
    // Machines reading --json get the error as JSON too (the stderr line stays for people).
    if (argv.includes('--json') && code !== EXIT.ok && !jsonPrinted) {
      const e = isMidcertError(err) ? err : err instanceof CommanderError ? { code: 'USAGE', message: err.message } : { code: 'INTERNAL', message: String((err as Error)?.message ?? err) };
      process.stdout.write(`${JSON.stringify({ ok: false, error: { code: e.code, message: e.message } })}\n`);
    }
    return code;
  }
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

export function reportError(programName: string, err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
    const message = err.message.replace(/^error:\s*/, '');
    process.stderr.write(`${programName}: error [USAGE] ${message} (see ${programName} --help)\n`);
    return EXIT.usage;
  }
  const error = isMidcertError(err) ? err : new MidcertError('INTERNAL', (err as Error)?.message ?? String(err), { cause: err });
  process.stderr.write(`${programName}: error [${error.code}] ${oneLine(error.message)}\n`);
  if (process.env.MIDCERT_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return exitCodeFor(error.code);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}

/**
 * Reads an input file with a size bound, turning OS errors into typed errors: regular files only
 * (FIFOs, devices, sockets and directories are refused), bound checked before and during the read
 * (common/bounded-read.ts, the reader every agent file read goes through).
 */
export async function readInput(path: string, limit: number = LIMITS.pemBytes, what = 'input file'): Promise<Buffer> {
  return readBoundedFile(path, { what, maxBytes: limit });
}

export interface PasswordSources {
  value?: string;
  file?: string;
  env?: string[];
}

/**
 * Resolves a password from (in order) a file, the command line, then environment variables. Files
 * and the environment keep secrets out of `ps` output. One trailing newline of a file is dropped.
 */
export async function resolvePassword(sources: PasswordSources): Promise<string | undefined> {
  if (sources.file !== undefined) {
    const text = (await readInput(sources.file, LIMITS.passwordFileBytes, 'password file')).toString('utf8');
    return text.replace(/\r?\n$/, '');
  }
  if (sources.value !== undefined) return sources.value;
  for (const name of sources.env ?? []) {
    const value = process.env[name];
    if (value !== undefined) return value;
  }
  return undefined;
}

let jsonPrinted = false;

export function printJson(value: unknown): void {
  jsonPrinted = true;
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function usageError(message: string): MidcertError {
  return new MidcertError('USAGE', message);
}

// ---- human output: colour, tables that fit the terminal, progress ----

type Stream = { isTTY?: boolean; columns?: number };

/**
 * Colour only for a person at a terminal: the stream is a TTY and NO_COLOR (https://no-color.org)
 * is unset or empty. FORCE_COLOR=1 forces it on (tests, `less -R`), FORCE_COLOR=0 off.
 */
export function useColor(stream: Stream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

const SGR = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, cyan: 36 } as const;
export type Style = keyof typeof SGR;

/** `text` in `style` when `on` (see useColor), else unchanged. */
export function paint(text: string, style: Style | undefined, on: boolean): string {
  return on && style && text ? `\u001b[${SGR[style]}m${text}\u001b[0m` : text;
}
