import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Rejects when `promise` has not settled within `ms`: a test of a read that must not hang fails
 * in seconds instead of running into mocha's timeout (or forever).
 */
export function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not answer within ${ms} ms (it hangs on the special file)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Opens each FIFO for writing (non-blocking) and closes it again, so a reader stuck in open() or
 * read() on it (code that does not refuse FIFOs) gets EOF and its thread is freed. ENXIO (no
 * reader) is the normal case and ignored.
 */
export async function releaseFifoReaders(fifos: string[]): Promise<void> {
  for (const fifo of fifos.splice(0)) {
    const handle = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await handle?.close();
  }
}
