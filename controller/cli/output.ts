import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import Table from 'cli-table3';

/** A human table for a TTY or a pipe (no colours, plain borders when piped). */
export function renderTable(head: string[], rows: (string | number)[][]): string {
  const table = new Table({ head, style: { head: [], border: [] }, chars: process.stdout.isTTY ? {} : asciiChars() });
  for (const row of rows) table.push(row.map(String));
  return `${table.toString()}\n`;
}

function asciiChars(): Record<string, string> {
  return {
    top: '-', 'top-mid': '+', 'top-left': '+', 'top-right': '+', bottom: '-', 'bottom-mid': '+', 'bottom-left': '+', 'bottom-right': '+',
    left: '|', 'left-mid': '+', mid: '-', 'mid-mid': '+', right: '|', 'right-mid': '+', middle: '|',
  };
}

/**
 * Progress for long operations: bars on a TTY (stderr), one line per event otherwise. Never on
 * stdout, which belongs to --json and tables.
 */
export interface Progress {
  start(total: number, label: string): void;
  tick(name: string, status: string): void;
  log(line: string): void;
  stop(): void;
}

export function createProgress(enabled: boolean): Progress {
  if (!enabled) return { start: () => undefined, tick: () => undefined, log: () => undefined, stop: () => undefined };
  if (!process.stderr.isTTY) {
    return {
      start: (total, label) => process.stderr.write(`${label}: ${total}\n`),
      tick: (name, status) => process.stderr.write(`  ${name}: ${status}\n`),
      log: (line) => process.stderr.write(`${line}\n`),
      stop: () => undefined,
    };
  }
  const multi = new MultiBar({ stream: process.stderr, format: ' {bar} {value}/{total} {label} {status}', hideCursor: true, clearOnComplete: false }, Presets.shades_classic);
  let bar: SingleBar | undefined;
  return {
    start: (total, label) => { bar = multi.create(total, 0, { label, status: '' }); },
    tick: (name, status) => bar?.increment(1, { status: `${name} ${status}` }),
    log: (line) => multi.log(`${line}\n`),
    stop: () => multi.stop(),
  };
}
