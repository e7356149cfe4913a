import { execFile } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Output beyond this many bytes per stream is cut (a runaway script cannot exhaust memory). */
  maxOutputBytes?: number;
  /** Windows: pass the arguments as they are, unquoted (for a cmd.exe line built by agent/windows/cmd.ts). */
  windowsVerbatimArguments?: boolean;
}

/**
 * Runs a program with an argument array — never through a shell — and always resolves, so
 * callers decide what a non-zero exit means. A missing program reads as exit 127, like a shell.
 */
export function execProgram(file: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
      maxBuffer: options.maxOutputBytes ?? 1024 * 1024,
      windowsHide: true,
      windowsVerbatimArguments: options.windowsVerbatimArguments ?? false,
    }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { killed?: boolean; signal?: string; code?: number | string }) | null;
      const timedOut = Boolean(e?.killed && e.signal === 'SIGKILL');
      let code = 0;
      if (e) code = typeof e.code === 'number' ? e.code : e.code === 'ENOENT' ? 127 : e.code === 'EACCES' ? 126 : 1;
      resolve({ code, stdout: String(stdout ?? ''), stderr: String(stderr ?? '') || (e && typeof e.code === 'string' ? e.message : ''), timedOut });
    });
  });
}

/** Replaces each secret in `text` with "****" (for script output that may echo arguments). */
export function redact(text: string, secrets: (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 3) out = out.split(secret).join('****');
  return out;
}
