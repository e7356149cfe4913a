import { createWriteStream } from 'node:fs';

/** One line in the instance log. Callers pass no secrets (no passwords, tokens, keys, bodies). */
export type Log = (message: string) => void;

export interface InstanceLog {
  write: Log;
  close(): Promise<void>;
}

/** Opens the log target: a line sink function, a file path (appended), or nothing. */
export function openLog(target: string | ((line: string) => void) | undefined): InstanceLog {
  const stamp = (message: string): string => `${new Date().toISOString()} instance: ${message.replace(/[\r\n]+/g, ' ')}`;
  if (target === undefined) return { write: () => undefined, close: async () => undefined };
  if (typeof target === 'function') return { write: (m) => target(stamp(m)), close: async () => undefined };
  const stream = createWriteStream(target, { flags: 'a', mode: 0o640 });
  stream.on('error', () => undefined); // a failing log must not take the instance down
  return {
    write: (m) => { stream.write(`${stamp(m)}\n`); },
    close: () => new Promise((resolve) => stream.end(resolve)),
  };
}
