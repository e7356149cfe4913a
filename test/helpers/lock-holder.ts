/**
 * A separate process for the state-lock tests: `lock-holder.ts STATE_DIR WHAT`. Prints `ready`,
 * waits for a line `go` on stdin, takes the lock and prints one JSON line ({"ok":true} or
 * {"ok":false,"code","message"}), then holds the lock until stdin says `release` (or closes),
 * releases it and exits 0.
 */
import { createInterface } from 'node:readline';
import { isMidcertError } from '../../common/errors.js';
import { acquireStateLock } from '../../agent/state-lock.js';

const [stateDir, what] = process.argv.slice(2);
if (!stateDir || !what) {
  process.stderr.write('usage: lock-holder.ts STATE_DIR WHAT\n');
  process.exit(2);
}
const lines = createInterface({ input: process.stdin });
let release: (() => Promise<void>) | undefined;
process.stdout.write('ready\n');
for await (const line of lines) {
  if (line === 'go' && !release) {
    try {
      release = await acquireStateLock(stateDir, what);
      process.stdout.write(`${JSON.stringify({ ok: true, pid: process.pid })}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ ok: false, pid: process.pid, code: isMidcertError(err) ? err.code : 'UNEXPECTED', message: err instanceof Error ? err.message : String(err) })}\n`);
    }
  } else if (line === 'release') {
    break;
  }
}
await release?.();
process.exit(0);
