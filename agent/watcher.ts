import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { MidPaths } from './mid-install.js';

export type MidFileEventType = 'keystore-changed' | 'config-changed';

export interface MidFileEvent {
  type: MidFileEventType;
  /** ISO-8601 UTC time the burst settled (the event fires then). */
  at: string;
  path: string;
}

export interface WatchOptions {
  /** Quiet time after the last change of a file before its event fires (default 300 ms). */
  debounceMs?: number;
  /** Poll instead of native events (network filesystems); off by default. */
  usePolling?: boolean;
  /** A watcher error (e.g. ENOSPC, too many inotify watches); the watch goes on where it can. */
  onError?: (err: Error) => void;
}

export interface MidFileWatch {
  close(): Promise<void>;
}

/**
 * Watches the MID keystore and config.xml for changes made by anyone (manage-certificates, an
 * administrator, the MID itself encrypting config.xml values on start). Watches from the MID home
 * down to the two files only (see watchPlan), so what tools do around them works: atomic replace
 * (temp file + rename), delete and recreate (of the file or its directory), editors' backup files,
 * a keystore that does not exist yet. Unrelated files never wake the watch. Every burst of changes
 * to one file yields exactly one event, `debounceMs` after its last change. Resolves once the
 * watch is in place.
 */
export async function watchMidFiles(paths: MidPaths, onEvent: (e: MidFileEvent) => void, options: WatchOptions = {}): Promise<MidFileWatch> {
  const debounceMs = options.debounceMs ?? 300;
  const targets = new Map<string, MidFileEventType>([
    [resolve(paths.keystore), 'keystore-changed'],
    [resolve(paths.configXml), 'config-changed'],
  ]);
  const plan = await watchPlan(resolve(paths.home), [...targets.keys()]);
  const timers = new Map<string, NodeJS.Timeout>();
  let closed = false;

  const watcher: FSWatcher = watch(plan.roots, {
    depth: plan.depth,
    ignoreInitial: true,
    persistent: true,
    usePolling: options.usePolling ?? false,
    // Native events only by default; polling (when asked for) at a pace fit for two small files.
    interval: 250,
    binaryInterval: 250,
    // Only the two files and the directories leading to them are watched; temp files, backups,
    // logs and everything else in the MID tree are not.
    ignored: (path: string) => !plan.keep.has(resolve(path)),
  });

  const schedule = (path: string): void => {
    const abs = resolve(path);
    const type = targets.get(abs);
    if (!type || closed) return;
    clearTimeout(timers.get(abs));
    timers.set(abs, setTimeout(() => {
      timers.delete(abs);
      if (!closed) onEvent({ type, at: new Date().toISOString(), path: abs });
    }, debounceMs));
  };
  for (const event of ['add', 'change', 'unlink'] as const) watcher.on(event, schedule);
  // A directory on the way to a file removed (MID reinstall, restore of agent/security): its files
  // changed with it, and they are picked up again when the directory comes back.
  watcher.on('unlinkDir', (dir: string) => {
    const gone = resolve(dir);
    for (const target of targets.keys()) if (isInside(target, gone)) schedule(target);
  });
  watcher.on('error', (err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err))));

  const ready = once(watcher, 'ready');
  const failed = once(watcher, 'error').then(([err]) => { throw err; });
  try {
    await Promise.race([ready, failed]);
  } catch (err) {
    await watcher.close();
    throw err;
  }
  failed.catch(() => undefined); // later errors go to onError

  return {
    close: async () => {
      closed = true;
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
      await watcher.close();
    },
  };
}

interface WatchPlan {
  /** Existing directories to hand to chokidar. */
  roots: string[];
  depth: number;
  /** Every path chokidar may look at: the roots, the directories between them and the files, the files. */
  keep: Set<string>;
}

/**
 * Where to watch from. A file's own directory may not exist yet (no keystore before the first
 * import) or may be removed and recreated, and chokidar cannot watch a missing path; so each file
 * is watched from the MID home when it lies inside it (else from its nearest existing ancestor),
 * deep enough to reach it, with everything off the way to the two files ignored.
 */
async function watchPlan(home: string, files: string[]): Promise<WatchPlan> {
  const roots = new Set<string>();
  const keep = new Set<string>();
  let depth = 0;
  for (const file of files) {
    const root = isInside(file, home) && (await isDirectory(home)) ? home : await nearestExistingDir(dirname(file));
    roots.add(root);
    const steps = relative(root, file).split(sep);
    depth = Math.max(depth, steps.length - 1);
    let at = root;
    keep.add(at);
    for (const step of steps) {
      at = join(at, step);
      keep.add(at);
    }
  }
  return { roots: [...roots], depth, keep };
}

async function nearestExistingDir(dir: string): Promise<string> {
  let at = dir;
  while (!(await isDirectory(at))) {
    const up = dirname(at);
    if (up === at) return at;
    at = up;
  }
  return at;
}

function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

/** True when `path` is `dir` or below it. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}
