import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { MidcertError, isMidcertError, type ErrorCode } from './errors.js';

/**
 * The one way midcert reads a file it did not just write itself: the keystore, config.xml,
 * backups, password files, journal files, keys and CSRs in the state dir, TLS files, CA files,
 * config files and every CLI input.
 *
 * - Regular files only. A symlink to a regular file is fine (what counts is what it points to);
 *   a FIFO, a character or block device (`/dev/zero`), a socket or a directory is refused with a
 *   coded error instead of hanging on it or reading it forever.
 * - The file is opened with O_NONBLOCK, so opening a FIFO cannot block, and the type and size are
 *   taken with fstat on the open descriptor: what is checked is what is read, even if the path is
 *   swapped in between. (A stat of the path before opening keeps devices from even being opened.)
 * - The size bound is checked before reading, and the read itself stops after bound + 1 bytes, so
 *   a file that grows while it is read is still refused rather than read without end.
 */
export interface BoundedReadOptions {
  /** How messages name the file, e.g. "the keystore", "config.xml", "bundle"; followed by the path. */
  what: string;
  /** The size bound in bytes (see common/limits.ts). */
  maxBytes: number;
  /** Code for a file that cannot be opened or is not a regular file (default INPUT_UNREADABLE). */
  unreadableCode?: ErrorCode;
  /** Code for a file over `maxBytes` (default INPUT_TOO_LARGE). */
  tooLargeCode?: ErrorCode;
  /** Called with the file's stat as soon as it is known, before any refusal (e.g. to report its mtime). */
  onStat?: (stats: Stats) => void;
}

/** Reads a whole regular file of at most `maxBytes`; throws a MidcertError otherwise (see above). */
export async function readBoundedFile(path: string, options: BoundedReadOptions): Promise<Buffer> {
  const handle = await openRegularFile(path, options);
  try {
    const info = await handle.stat();
    assertWithinBound(path, info.size, options);
    return await readAtMost(handle, path, info.size, options);
  } catch (err) {
    throw isMidcertError(err) ? err : unreadable(path, options, err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** readBoundedFile, as UTF-8 text. */
export async function readBoundedText(path: string, options: BoundedReadOptions): Promise<string> {
  return (await readBoundedFile(path, options)).toString('utf8');
}

/** readBoundedFile, but undefined when nothing exists at `path` (any other problem still throws). */
export async function readBoundedFileIfExists(path: string, options: BoundedReadOptions): Promise<Buffer | undefined> {
  try {
    return await readBoundedFile(path, options);
  } catch (err) {
    if (isMissingFile(err)) return undefined;
    throw err;
  }
}

/** True for the error readBoundedFile throws when nothing exists at the path. */
export function isMissingFile(err: unknown): boolean {
  return isMidcertError(err) && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/**
 * Opens a regular file for reading without blocking on a FIFO and checks, on the descriptor, that
 * it is one. For readers that read a part of a file themselves (the MID log); the caller closes it.
 */
export async function openRegularFile(path: string, options: Pick<BoundedReadOptions, 'what' | 'unreadableCode' | 'onStat'>): Promise<FileHandle> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (err) {
    throw unreadable(path, options, err);
  }
  options.onStat?.(info);
  assertRegular(path, info, options);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw unreadable(path, options, err);
  }
  try {
    assertRegular(path, await handle.stat(), options);
    return handle;
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw isMidcertError(err) ? err : unreadable(path, options, err);
  }
}

function assertRegular(path: string, info: Stats, options: Pick<BoundedReadOptions, 'what' | 'unreadableCode'>): void {
  if (info.isFile()) return;
  throw new MidcertError(options.unreadableCode ?? 'INPUT_UNREADABLE', `${options.what} ${path} is ${kindOf(info)}, not a regular file; refusing to read it`);
}

function kindOf(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  if (info.isDirectory()) return 'a directory';
  return 'a special file';
}

function assertWithinBound(path: string, size: number, options: BoundedReadOptions): void {
  if (size > options.maxBytes) {
    throw new MidcertError(options.tooLargeCode ?? 'INPUT_TOO_LARGE', `${options.what} ${path} is ${size} bytes; the limit is ${options.maxBytes} bytes`);
  }
}

/** Reads to end of file, but never more than maxBytes + 1 bytes (one more proves it grew past the bound). */
async function readAtMost(handle: FileHandle, path: string, sizeHint: number, options: BoundedReadOptions): Promise<Buffer> {
  const cap = options.maxBytes + 1;
  let buffer = Buffer.alloc(Math.min(cap, sizeHint + 1));
  let total = 0;
  for (;;) {
    if (total === buffer.length) {
      if (buffer.length >= cap) break;
      const grown = Buffer.alloc(Math.min(cap, Math.max(buffer.length * 2, 64 * 1024)));
      buffer.copy(grown, 0, 0, total);
      buffer = grown;
    }
    const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  if (total > options.maxBytes) {
    throw new MidcertError(options.tooLargeCode ?? 'INPUT_TOO_LARGE', `${options.what} ${path} grew past the limit of ${options.maxBytes} bytes while it was read`);
  }
  return buffer.subarray(0, total);
}

function unreadable(path: string, options: Pick<BoundedReadOptions, 'what' | 'unreadableCode'>, err: unknown): MidcertError {
  const reason = (err as NodeJS.ErrnoException)?.code ?? 'read error';
  return new MidcertError(options.unreadableCode ?? 'INPUT_UNREADABLE', `cannot read ${options.what} ${path}: ${reason}`, { cause: err });
}
