import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { MidcertError } from '../common/errors.js';

/**
 * A lock file in the state dir so the daemon and a host-local `midcert-agent install` never change
 * the MID at the same time. Holds the owner's pid; a lock whose pid is gone is stale and taken over.
 */
export async function acquireStateLock(stateDir: string, what: string): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'agent.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n${what}\n`);
      await handle.close();
      return async () => { await unlink(path).catch(() => undefined); };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const [pidText, holder] = (await readFile(path, 'utf8').catch(() => '')).split('\n');
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new MidcertError('RENEWAL_BUSY', `another midcert-agent process (pid ${pid}) is busy: ${holder || 'working'}`);
      }
      await unlink(path).catch(() => undefined); // stale
    }
  }
  throw new MidcertError('RENEWAL_BUSY', 'cannot take the state-dir lock');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
