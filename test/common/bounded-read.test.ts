import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { unlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMissingFile, openRegularFile, readBoundedFile, readBoundedFileIfExists } from '../../common/bounded-read.js';
import { MidcertError } from '../../common/errors.js';
import { readInput } from '../../common/cli.js';
import { runOk } from '../helpers/run.js';
import { releaseFifoReaders, within } from '../helpers/special-files.js';

const coded = (code: string, message: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof MidcertError, `not a MidcertError: ${String(err)}`);
  assert.equal(err.code, code);
  assert.match(err.message, message);
  return true;
};

describe('bounded reader (common/bounded-read.ts)', function () {
  this.timeout(20_000);
  let dir: string;
  const fifos: string[] = [];
  const file = (name: string): string => join(dir, name);

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'midcert-bounded-')); });
  afterEach(() => releaseFifoReaders(fifos));
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a regular file, and a symlink to one, byte for byte', async () => {
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    await writeFile(file('plain.bin'), bytes);
    await symlink(file('plain.bin'), file('link.bin'));
    assert.deepEqual(await readBoundedFile(file('plain.bin'), { what: 'the test file', maxBytes: 70_000 }), bytes);
    assert.deepEqual(await readBoundedFile(file('link.bin'), { what: 'the test file', maxBytes: 70_000 }), bytes);
    assert.equal((await readBoundedFile(file('plain.bin'), { what: 'x', maxBytes: 1 << 20 })).length, 70_000);
    await writeFile(file('empty'), '');
    assert.equal((await readBoundedFile(file('empty'), { what: 'x', maxBytes: 0 })).length, 0);
  });

  it('refuses a symlink to /dev/zero at once, without reading from it', async () => {
    await symlink('/dev/zero', file('zero'));
    const started = Date.now();
    await assert.rejects(within(5_000, readBoundedFile(file('zero'), { what: 'the keystore', maxBytes: 4 << 20, unreadableCode: 'KEYSTORE_UNREADABLE' })),
      coded('KEYSTORE_UNREADABLE', /^the keystore .*zero is a character device, not a regular file/));
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
  });

  it('refuses a FIFO without blocking on it (no writer ever opens it)', async () => {
    await runOk('mkfifo', [file('pipe')]);
    fifos.push(file('pipe'));
    await assert.rejects(within(5_000, readBoundedFile(file('pipe'), { what: 'config.xml', maxBytes: 1024 })),
      coded('INPUT_UNREADABLE', /^config\.xml .*pipe is a FIFO \(named pipe\), not a regular file/));
    await symlink(file('pipe'), file('pipe-link'));
    await assert.rejects(within(5_000, readBoundedFile(file('pipe-link'), { what: 'x', maxBytes: 1024 })), coded('INPUT_UNREADABLE', /is a FIFO/));
  });

  it('checks the open descriptor: a regular file swapped for a FIFO after the path was looked at is refused, not blocked on', async () => {
    await writeFile(file('swapped'), 'regular');
    fifos.push(file('swapped'));
    await assert.rejects(within(5_000, readBoundedFile(file('swapped'), {
      what: 'the keystore', maxBytes: 1024,
      onStat: () => { unlinkSync(file('swapped')); execFileSync('mkfifo', [file('swapped')]); },
    })), coded('INPUT_UNREADABLE', /is a FIFO \(named pipe\), not a regular file/));
  });

  it('refuses a directory and a socket', async () => {
    await mkdir(file('a-dir'));
    await assert.rejects(readBoundedFile(file('a-dir'), { what: 'the backup', maxBytes: 1024, unreadableCode: 'ROLLBACK_FAILED' }), coded('ROLLBACK_FAILED', /is a directory, not a regular file/));
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(file('sock'), resolve));
    try {
      await assert.rejects(within(5_000, readBoundedFile(file('sock'), { what: 'x', maxBytes: 1024 })), coded('INPUT_UNREADABLE', /is a socket, not a regular file/));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('checks the size bound before reading, with the caller\'s code', async () => {
    await writeFile(file('big'), Buffer.alloc(1025, 0x41));
    await assert.rejects(readBoundedFile(file('big'), { what: 'the bundle', maxBytes: 1024 }), coded('INPUT_TOO_LARGE', /^the bundle .*big is 1025 bytes; the limit is 1024 bytes$/));
    await assert.rejects(readBoundedFile(file('big'), { what: 'x', maxBytes: 1024, tooLargeCode: 'CONFIG_INVALID' }), coded('CONFIG_INVALID', /1025 bytes/));
    assert.equal((await readBoundedFile(file('big'), { what: 'x', maxBytes: 1025 })).length, 1025);
  });

  it('bounds the read itself, not only the size fstat reports (a file that grows is still caught)', async () => {
    // A procfs file reports size 0 yet has content, like a file that grew after fstat: reading
    // stops at bound + 1 bytes and the file is refused.
    const whole = await readBoundedFile('/proc/self/status', { what: 'x', maxBytes: 1 << 20 });
    assert.ok(whole.length > 100);
    await assert.rejects(readBoundedFile('/proc/self/status', { what: 'the state', maxBytes: 50 }), coded('INPUT_TOO_LARGE', /grew past the limit of 50 bytes/));
  });

  it('says ENOENT for a missing file, and readBoundedFileIfExists answers undefined', async () => {
    await assert.rejects(readBoundedFile(file('nope'), { what: 'the keystore', maxBytes: 10 }), (err: unknown) => {
      assert.ok(isMissingFile(err));
      return coded('INPUT_UNREADABLE', /^cannot read the keystore .*nope: ENOENT$/)(err);
    });
    assert.equal(await readBoundedFileIfExists(file('nope'), { what: 'x', maxBytes: 10 }), undefined);
    await symlink(file('gone'), file('dangling'));
    assert.equal(await readBoundedFileIfExists(file('dangling'), { what: 'x', maxBytes: 10 }), undefined);
    await runOk('mkfifo', [file('pipe2')]);
    fifos.push(file('pipe2'));
    await assert.rejects(within(5_000, readBoundedFileIfExists(file('pipe2'), { what: 'x', maxBytes: 10 })), coded('INPUT_UNREADABLE', /FIFO/));
  });

  it('openRegularFile refuses a FIFO without blocking, and the CLI readInput is the same path', async () => {
    await runOk('mkfifo', [file('pipe3')]);
    fifos.push(file('pipe3'));
    await assert.rejects(within(5_000, openRegularFile(file('pipe3'), { what: 'the MID log' })), coded('INPUT_UNREADABLE', /^the MID log .* is a FIFO/));
    await assert.rejects(within(5_000, readInput(file('pipe3'), 4096, 'keystore')), coded('INPUT_UNREADABLE', /^keystore .* is a FIFO/));
    await assert.rejects(within(5_000, readInput('/dev/zero', 4096, 'keystore')), coded('INPUT_UNREADABLE', /character device/));
    const handle = await openRegularFile(file('plain.bin'), { what: 'x' });
    try {
      assert.equal((await handle.stat()).size, 70_000);
    } finally {
      await handle.close();
    }
  });
});
