import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import Table from 'cli-table3';
import { paint, useColor, type Style } from './cli.js';

/**
 * Tables and progress for people, on the well-kept libraries (cli-table3, cli-progress). Loaded
 * only when a command runs (controller/cli/output.ts), so --version and --help stay instant.
 * Machines use --json instead.
 */

type Stream = { isTTY?: boolean; columns?: number };

/** Where a table must fit: the terminal's width on a TTY, else 80 columns. */
export function outputWidth(stream: Stream = process.stdout): number {
  return stream.isTTY && stream.columns && stream.columns >= 20 ? stream.columns : 80;
}

export interface TableOptions {
  /** total width the table may take (default: outputWidth(stream)) */
  width?: number;
  /** where it goes: decides borders (Unicode on a TTY, ASCII when piped), colour and width */
  stream?: Stream;
  /** colour (default: useColor(stream)) */
  color?: boolean;
  /** a style for one cell, by column index and its text */
  style?: (column: number, text: string) => Style | undefined;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const CELL_PADDING = 2;

/** Columns a cell text takes (colour codes count zero). */
function stringWidth(text: string): number {
  return text.replace(ANSI, '').length;
}

/**
 * A table that fits `width` columns (80 when piped): column widths from fitColumns, long cells
 * wrapped by cli-table3 (breaking words longer than their column, so no text is cut off).
 */
export function renderTable(head: string[], rows: (string | number)[][], options: TableOptions = {}): string {
  const stream = options.stream ?? process.stdout;
  const color = options.color ?? useColor(stream);
  const width = Math.max(options.width ?? outputWidth(stream), 20);
  const cells = rows.map((r) => head.map((_, i) => String(r[i] ?? '').replace(ANSI, '').replace(/\t/g, ' ')));
  const natural = head.map((h, i) => Math.max(stringWidth(h), ...cells.map((r) => longestLine(r[i] ?? ''))));
  const words = head.map((h, i) => Math.min(natural[i] ?? 1, 16, Math.max(3, longestWord(h), ...cells.map((r) => longestWord(r[i] ?? '')))));
  const room = width - (head.length + 1) - CELL_PADDING * head.length;
  const widths = fitColumns(natural, [words, natural.map((n) => Math.min(n, 3))], room);
  // Cells are wrapped here, then coloured line by line, so colour codes never straddle a break.
  const cell = (text: string, i: number, style: Style | undefined): string =>
    wrapCell(text, widths[i] ?? 1).map((line) => paint(line, style, color)).join('\n');
  const table = new Table({
    head: head.map((h, i) => cell(h, i, 'bold')),
    colWidths: widths.map((w) => w + CELL_PADDING),
    style: { head: [], border: [] },
    chars: stream.isTTY ? {} : ASCII_CHARS,
  });
  for (const r of cells) table.push(r.map((text, i) => cell(text, i, options.style?.(i, text))));
  return `${table.toString()}\n`;
}

/** Lines of at most `width` columns, breaking after a space, comma, slash, colon or hyphen when one is near. */
function wrapCell(text: string, width: number): string[] {
  const out: string[] = [];
  for (let rest of text.split('\n')) {
    while (rest.length > width) {
      const window = rest.slice(0, width);
      const brk = Math.max(...[' ', ',', '/', ':', '-'].map((c) => window.lastIndexOf(c)));
      const at = brk > 0 ? brk + 1 : width;
      out.push(rest.slice(0, at).trimEnd());
      rest = rest.slice(at).trimStart();
    }
    out.push(rest);
  }
  return out;
}

const ASCII_CHARS = {
  top: '-', 'top-mid': '+', 'top-left': '+', 'top-right': '+', bottom: '-', 'bottom-mid': '+', 'bottom-left': '+', 'bottom-right': '+',
  left: '|', 'left-mid': '+', mid: '-', 'mid-mid': '+', right: '|', 'right-mid': '+', middle: '|',
};

function longestLine(text: string): number {
  return Math.max(1, ...text.split('\n').map((l) => stringWidth(l)));
}

function longestWord(text: string): number {
  return Math.max(1, ...text.split(/\s+/).map((w) => stringWidth(w)));
}

/**
 * Column widths that sum to at most `room`: columns keep their natural width when everything fits;
 * otherwise the widest column gives way, one column at a time, down to its floor in the first tier
 * of floors, then the next tier's, and so on (never below 1).
 */
export function fitColumns(natural: number[], tiers: number[][], room: number): number[] {
  const widths = natural.map((n) => Math.max(1, n));
  let total = widths.reduce((a, c) => a + c, 0);
  for (const floors of [...tiers, widths.map(() => 1)]) {
    while (total > room) {
      let widest = -1;
      for (let i = 0; i < widths.length; i++) {
        if ((widths[i] ?? 0) > Math.max(1, floors[i] ?? 1) && (widest < 0 || (widths[i] ?? 0) > (widths[widest] ?? 0))) widest = i;
      }
      if (widest < 0) break;
      widths[widest] = (widths[widest] ?? 1) - 1;
      total--;
    }
  }
  return widths;
}

/**
 * Progress for long operations, always on stderr (stdout belongs to --json and tables): a
 * cli-progress bar on a TTY, one line per event otherwise; nothing at all when disabled.
 */
export interface Progress {
  start(total: number, label: string): void;
  tick(name: string, status: string): void;
  log(line: string): void;
  stop(): void;
}

export function createProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled) return { start: () => undefined, tick: () => undefined, log: () => undefined, stop: () => undefined };
  if (!stream.isTTY) {
    return {
      start: (total, label) => { stream.write(`${label}: ${total}\n`); },
      tick: (name, status) => { stream.write(`  ${name}: ${status}\n`); },
      log: (line) => { stream.write(`${line}\n`); },
      stop: () => undefined,
    };
  }
  const multi = new MultiBar({
    stream, format: ' {bar} {value}/{total} {label} {status}', barsize: 20, hideCursor: true, clearOnComplete: false,
    autopadding: true, linewrap: false, noTTYOutput: false, forceRedraw: true,
  }, Presets.shades_classic);
  let bar: SingleBar | undefined;
  const room = (): number => Math.max(10, outputWidth(stream) - 40);
  const fit = (text: string): string => (text.length > room() ? `${text.slice(0, room() - 1)}…` : text);
  return {
    start: (total, label) => { bar = multi.create(total, 0, { label, status: '' }); },
    tick: (name, status) => { bar?.increment(1, { status: fit(`${name} ${status}`) }); },
    log: (line) => { multi.log(`${line}\n`); },
    stop: () => { multi.stop(); },
  };
}
