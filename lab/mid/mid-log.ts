import { appendFile } from 'node:fs/promises';

/**
 * The simulated MID's `agent/logs/agent0.log.0`, written in the real MID's line shape:
 * `MM/dd/yy HH:mm:ss (SSS) <thread> <message>`, errors as `SEVERE *** ERROR *** <message>`.
 * Nothing secret is ever passed in: callers log names, URLs, subjects and error text only.
 */

export type MidThread = 'StartupSequencer' | 'MIDServer' | 'HeartbeatThread' | 'ShutdownSequencer' | 'ConfigWriter';

export function formatLogLine(when: Date, thread: MidThread, message: string, severe = false): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  const date = `${pad(when.getMonth() + 1)}/${pad(when.getDate())}/${pad(when.getFullYear() % 100)}`;
  const time = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  const text = message.replace(/[\r\n]+/g, ' ');
  return `${date} ${time} (${pad(when.getMilliseconds(), 3)}) ${thread} ${severe ? 'SEVERE *** ERROR *** ' : ''}${text}\n`;
}

/**
 * Appends lines in order. Writes are chained so lines never interleave or reorder; a failed write
 * (disk full, directory removed under a test) is dropped rather than crashing the runner.
 */
export class MidLog {
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  info(thread: MidThread, message: string): Promise<void> {
    return this.write(formatLogLine(new Date(), thread, message));
  }

  severe(thread: MidThread, message: string): Promise<void> {
    return this.write(formatLogLine(new Date(), thread, message, true));
  }

  /** Resolves when every line logged so far is on disk. */
  flush(): Promise<void> {
    return this.tail;
  }

  private write(line: string): Promise<void> {
    this.tail = this.tail.then(() => appendFile(this.path, line)).catch(() => undefined);
    return this.tail;
  }
}
