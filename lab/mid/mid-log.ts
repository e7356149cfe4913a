import { appendFile } from 'node:fs/promises';

/**
 * The simulated MID's logs, in the files and line shapes the vendor documents (docs/vendor-facts.md §8):
 * - files: `agent/logs/agent0.log.0` and `agent/logs/wrapper.log` ("Only agent0.log.0 and
 *   wrapper.log entries appear. These logs are also accessible in the ~\agent\logs\ file path." —
 *   SND:servicenow-platform/mid-server/ecc-queue-mid-server.md). Every line goes to both; in
 *   wrapper.log behind the Java Service Wrapper's own prefix `INFO   | jvm 1    | yyyy/MM/dd HH:mm:ss | `
 *   (the wrapper's default format; no ServiceNow document shows it — lab assumption).
 * - 'old' line format (default), as in KB0745466: `03/28/19 10:27:09 (774) StartupSequencer SEVERE *** ERROR *** …`,
 *   warnings as KB1048088: `… WARNING *** WARNING *** Could not authenticate user …`.
 * - 'tokyo' line format (option), as in SND:…/mid_file_cleaner.md:
 *   `2022-10-21T13:08:58.330+0200 INFO (MIDServer) [Main:265] Initializing MID Server`; KB1216223 shows
 *   `WARN (Thread) [Class:line]`. The severe form `SEVERE (Thread) [Class:line] *** ERROR *** msg` is a lab
 *   assumption (no document shows a Tokyo+ SEVERE line); it keeps the words SEVERE and *** ERROR ***.
 * Nothing secret is ever passed in: callers log names, URLs, subjects and error text only.
 */

export type MidThread =
  | 'StartupSequencer' | 'MIDServer' | 'HeartbeatThread' | 'ShutdownSequencer' | 'ConfigWriter'
  | 'ECCQueueMonitor' | 'SystemCommand' | 'KeyPairManager' | 'CredentialsProvider';
export type LogFormat = 'old' | 'tokyo';
export type LogLevel = 'info' | 'warning' | 'severe';

/** A class and line number for the Tokyo+ `[Class:line]` field (invented but stable per thread). */
const CLASS_OF: Record<MidThread, string> = {
  StartupSequencer: 'StartupSequencer:212', MIDServer: 'Main:265', HeartbeatThread: 'HeartbeatMonitor:97', ShutdownSequencer: 'MIDServerState:160',
  ConfigWriter: 'ConfigParameters:344', ECCQueueMonitor: 'ECCQueueMonitor:421', SystemCommand: 'SystemCommand:88',
  KeyPairManager: 'KeyPairManager:133', CredentialsProvider: 'CredentialsProvider:251',
};

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

export function formatLogLine(when: Date, thread: MidThread, message: string, level: LogLevel | boolean = 'info', format: LogFormat = 'old'): string {
  const lvl: LogLevel = level === true ? 'severe' : level === false ? 'info' : level;
  const text = message.replace(/[\r\n]+/g, ' ');
  if (format === 'tokyo') {
    const offset = -when.getTimezoneOffset();
    const zone = `${offset >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(offset) / 60))}${pad(Math.abs(offset) % 60)}`;
    const stamp = `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}.${pad(when.getMilliseconds(), 3)}${zone}`;
    const word = lvl === 'severe' ? 'SEVERE' : lvl === 'warning' ? 'WARN' : 'INFO';
    const marker = lvl === 'severe' ? '*** ERROR *** ' : lvl === 'warning' ? '*** WARNING *** ' : '';
    return `${stamp} ${word} (${thread}) [${CLASS_OF[thread]}] ${marker}${text}\n`;
  }
  const date = `${pad(when.getMonth() + 1)}/${pad(when.getDate())}/${pad(when.getFullYear() % 100)}`;
  const time = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  const marker = lvl === 'severe' ? 'SEVERE *** ERROR *** ' : lvl === 'warning' ? 'WARNING *** WARNING *** ' : '';
  return `${date} ${time} (${pad(when.getMilliseconds(), 3)}) ${thread} ${marker}${text}\n`;
}

/** The wrapper.log form of an agent line (Java Service Wrapper prefix; lab assumption, see above). */
export function wrapperLine(when: Date, agentLine: string): string {
  const stamp = `${when.getFullYear()}/${pad(when.getMonth() + 1)}/${pad(when.getDate())} ${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  return `INFO   | jvm 1    | ${stamp} | ${agentLine}`;
}

/**
 * Appends lines in order to agent0.log.0 and (when given) wrapper.log. Writes are chained so
 * lines never interleave or reorder; a failed write (disk full, directory removed under a test)
 * is dropped rather than crashing the runner.
 */
export class MidLog {
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly path: string, readonly wrapperPath?: string, readonly format: LogFormat = 'old') {}

  info(thread: MidThread, message: string): Promise<void> {
    return this.line(thread, message, 'info');
  }

  warning(thread: MidThread, message: string): Promise<void> {
    return this.line(thread, message, 'warning');
  }

  severe(thread: MidThread, message: string): Promise<void> {
    return this.line(thread, message, 'severe');
  }

  /** Resolves when every line logged so far is on disk. */
  flush(): Promise<void> {
    return this.tail;
  }

  private line(thread: MidThread, message: string, level: LogLevel): Promise<void> {
    const now = new Date();
    const text = formatLogLine(now, thread, message, level, this.format);
    const wrapper = this.wrapperPath;
    this.tail = this.tail.then(async () => {
      await appendFile(this.path, text).catch(() => undefined);
      if (wrapper) await appendFile(wrapper, wrapperLine(now, text)).catch(() => undefined);
    });
    return this.tail;
  }
}
