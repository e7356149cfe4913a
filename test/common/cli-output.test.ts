import assert from 'node:assert/strict';
import { paint, useColor } from '../../common/cli.js';
import { createProgress, fitColumns, renderTable } from '../../common/human-output.js';

// eslint-disable-next-line no-control-regex
const displayWidth = (line: string): number => line.replace(/\u001b\[[?0-9;]*[A-Za-z]/g, '').length;

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/;
const piped = { isTTY: false };
const tty = (columns = 80): { isTTY: boolean; columns: number } => ({ isTTY: true, columns });

/** A fleet as people name it: long FQDN agent names, long MID names, several tags. */
const LONG = Array.from({ length: 3 }, (_, i) => ({
  name: `mid-prod-datacenter-frankfurt-east-${i + 1}.corp.example.com`,
  address: `mid-server-production-datacenter-frankfurt-east-${i + 1}.corp.example.com:7443`,
  mid: `MID_PROD_FRANKFURT_EAST_DATACENTER_0${i + 1}`,
  tags: 'frankfurt,linux-rhel9,production',
  cluster: 'frankfurt-east-cluster-01',
}));

function widest(text: string): number {
  return Math.max(...text.trimEnd().split('\n').map(displayWidth));
}

/** The cell text of one column, wrapped lines joined back (borders and padding removed). */
function columnText(table: string, column: number): string {
  return table.trimEnd().split('\n').filter((l) => /^[|│]/.test(l)).map((l) => l.split(/[|│]/)[column + 1]?.trim() ?? '').join('');
}

describe('common/human-output (cli-table3, cli-progress) and colour rules', () => {
  describe('useColor', () => {
    it('is off when the stream is not a TTY (pipes, files, CI logs)', () => {
      assert.equal(useColor(piped, {}), false);
    });
    it('is on for a TTY, off again when NO_COLOR is set to anything non-empty', () => {
      assert.equal(useColor(tty(), {}), true);
      assert.equal(useColor(tty(), { NO_COLOR: '1' }), false);
      assert.equal(useColor(tty(), { NO_COLOR: 'yes' }), false);
      assert.equal(useColor(tty(), { NO_COLOR: '' }), true, 'NO_COLOR="" counts as unset (no-color.org)');
      assert.equal(useColor(tty(), { TERM: 'dumb' }), false);
    });
    it('NO_COLOR wins over FORCE_COLOR; FORCE_COLOR turns colour on when piped', () => {
      assert.equal(useColor(piped, { FORCE_COLOR: '1' }), true);
      assert.equal(useColor(tty(), { FORCE_COLOR: '0' }), false);
      assert.equal(useColor(piped, { FORCE_COLOR: '1', NO_COLOR: '1' }), false);
    });
    it('paint adds SGR codes only when on', () => {
      assert.equal(paint('ok', 'green', false), 'ok');
      assert.equal(paint('ok', 'green', true), '\u001b[32mok\u001b[0m');
    });
  });

  describe('renderTable', () => {
    it('fits a typical `agents list` with long names into 80 columns when piped, losing no text', () => {
      const head = ['agent', 'address', 'MID', 'tags', 'cluster'];
      const out = renderTable(head, LONG.map((a) => [a.name, a.address, a.mid, a.tags, a.cluster]), { stream: piped });
      assert.ok(widest(out) <= 80, `widest line ${widest(out)}:\n${out}`);
      assert.doesNotMatch(out, ANSI, 'no colour when piped');
      assert.match(out, /^\+-/, 'ASCII borders when piped');
      const names = columnText(out, 0);
      for (const a of LONG) assert.ok(names.includes(a.name), `${a.name} is kept whole across wrapped lines`);
      assert.ok(columnText(out, 1).includes(LONG[2]!.address));
      assert.ok(columnText(out, 2).includes(LONG[0]!.mid));
    });

    it('fits a typical fleet `status` table into 80 columns', () => {
      const head = ['MID', 'agent', 'reachable', 'instance', 'expires', 'days left', 'last rotation'];
      const rows = LONG.map((a, i) => [a.mid, a.name, i === 1 ? 'no (UNAVAILABLE)' : 'yes', 'Up', '2027-01-30', String(60 - i * 40), 'succeeded 2026-11-30T12:00']);
      const out = renderTable(head, rows, { stream: piped });
      assert.ok(widest(out) <= 80, `widest line ${widest(out)}:\n${out}`);
      assert.equal(columnText(out, 4), 'expires2027-01-302027-01-302027-01-30', 'short columns are not wrapped');
    });

    it('keeps a table that fits as it is, and uses the terminal width and Unicode borders on a TTY', () => {
      const small = renderTable(['a', 'b'], [['x', 'y']], { stream: piped });
      assert.equal(small, '+---+---+\n| a | b |\n+---+---+\n| x | y |\n+---+---+\n');
      const head = ['agent', 'address', 'MID', 'tags', 'cluster'];
      const rows = LONG.map((a) => [a.name, a.address, a.mid, a.tags, a.cluster]);
      const wide = renderTable(head, rows, { stream: tty(250), color: false });
      assert.match(wide, /^┌─/);
      assert.equal(wide.trimEnd().split('\n').length, 3 + 2 * LONG.length, 'one line per row (and its rule) at 250 columns');
      const narrow = renderTable(head, rows, { stream: tty(60), color: false });
      assert.ok(widest(narrow) <= 60, `widest line ${widest(narrow)} at 60 columns`);
    });

    it('colours the header and styled cells only when colour is on, without changing the layout', () => {
      const rows = [['mid01', 'yes'], ['mid02', 'no']];
      const style = (col: number, text: string): 'green' | 'red' | undefined => (col === 1 ? (text === 'yes' ? 'green' : 'red') : undefined);
      const plain = renderTable(['MID', 'reachable'], rows, { stream: tty(), color: false, style });
      const coloured = renderTable(['MID', 'reachable'], rows, { stream: tty(), color: true, style });
      assert.doesNotMatch(plain, ANSI);
      assert.match(coloured, /\u001b\[1mMID\u001b\[0m/);
      assert.match(coloured, /\u001b\[32myes\u001b\[0m/);
      assert.match(coloured, /\u001b\[31mno\u001b\[0m/);
      // eslint-disable-next-line no-control-regex
      assert.equal(coloured.replace(/\u001b\[[0-9;]*m/g, ''), plain);
    });

    it('with colour left to the stream: none when NO_COLOR is set, even on a TTY', () => {
      const saved = process.env.NO_COLOR;
      process.env.NO_COLOR = '1';
      try {
        assert.doesNotMatch(renderTable(['a'], [['b']], { stream: tty() }), ANSI);
      } finally {
        if (saved === undefined) delete process.env.NO_COLOR;
        else process.env.NO_COLOR = saved;
      }
    });
  });

  describe('layout helpers', () => {
    it('fitColumns shrinks the widest column first and keeps tiers of floors', () => {
      assert.deepEqual(fitColumns([10, 3, 30], [[5, 3, 5]], 30), [10, 3, 17]);
      assert.deepEqual(fitColumns([10, 3, 30], [[5, 3, 5]], 13), [5, 3, 5]);
      assert.deepEqual(fitColumns([4, 4], [[4, 4]], 100), [4, 4]);
    });
  });

  describe('createProgress', () => {
    function sink(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
      let text = '';
      const stream = { isTTY, columns: 80, write: (chunk: string) => { text += chunk; return true; } } as unknown as NodeJS.WriteStream;
      return { stream, text: () => text };
    }
    it('prints one line per event when not a TTY (logs stay readable)', () => {
      const s = sink(false);
      const p = createProgress(true, s.stream);
      p.start(2, 'rotating');
      p.tick('mid01', 'Up');
      p.log('wave 2: mid02');
      p.tick('mid02', 'failed');
      p.stop();
      assert.equal(s.text(), 'rotating: 2\n  mid01: Up\nwave 2: mid02\n  mid02: failed\n');
    });
    it('draws a bar redrawn in place on a TTY, each frame within the width', () => {
      const s = sink(true);
      const p = createProgress(true, s.stream);
      p.start(4, 'rotating');
      p.tick('mid-prod-datacenter-frankfurt-east-1.corp.example.com', 'Up with the new certificate and a very long status message');
      p.stop();
      const frames = s.text().split(/\r|\u001b\[1G/).filter(Boolean).map((f) => f.replace(/\n$/, ''));
      assert.ok(frames.some((f) => f.includes('1/4 rotating')), s.text());
      for (const f of frames) assert.ok(displayWidth(f) <= 80, `frame of ${displayWidth(f)} columns`);
      assert.ok(s.text().endsWith('\n'));
    });
    it('prints nothing when disabled', () => {
      const s = sink(true);
      const p = createProgress(false, s.stream);
      p.start(1, 'x');
      p.tick('a', 'b');
      p.stop();
      assert.equal(s.text(), '');
    });
  });
});
