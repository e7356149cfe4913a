'use strict';
/**
 * Loads a native addon (.node) that travels inside a single executable as a SEA asset.
 *
 * A SEA binary can only `require` built-in modules and `dlopen` needs a real file, so the addon is
 * written once to a private cache directory and loaded from there:
 *
 *   - directory: $MIDCERT_CACHE_DIR, else $CACHE_DIRECTORY (systemd CacheDirectory=), else
 *     $XDG_CACHE_HOME/midcert, else $HOME/.cache/midcert, else $TMPDIR (or /tmp)/midcert-<uid>; the first
 *     one that can be made private wins. It must be a real directory (not a symlink) owned by the
 *     current user with mode 0700 (a wider mode on our own directory is tightened; another owner
 *     means the candidate is skipped).
 *   - file name: <stem>-<first 16 hex of SHA-256 of the content>.node, so two versions of the
 *     binary never load each other's addon; an existing file is used only when it is a regular
 *     file owned by us and its content hashes to the same value (else it is replaced).
 *   - written to a temporary name with O_EXCL, mode 0500, fsynced, then renamed into place, so a
 *     concurrent start never loads half a file.
 *
 * The build (packaging/build-sea.mjs) points better-sqlite3's `require('bindings')(…)` at
 * this module, so the controller code opens its database unchanged.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const loaded = new Map();

function defaultGetAsset(key) {
  let sea;
  try {
    sea = require('node:sea');
  } catch {
    sea = undefined;
  }
  if (!sea || !sea.isSea()) {
    throw new Error(`native addon "${key}" is only embedded in the single executable; this bundle is not running as one`);
  }
  return Buffer.from(sea.getRawAsset(key));
}

function defaultDlopen(file) {
  const mod = { exports: {} };
  process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
  return mod.exports;
}

/** The cache directory candidates, best first. */
function cacheDirCandidates(env) {
  const out = [];
  if (env.MIDCERT_CACHE_DIR) out.push(path.resolve(env.MIDCERT_CACHE_DIR));
  if (env.CACHE_DIRECTORY) out.push(path.resolve(env.CACHE_DIRECTORY.split(':')[0]));
  if (env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)) out.push(path.join(env.XDG_CACHE_HOME, 'midcert'));
  if (env.HOME && path.isAbsolute(env.HOME)) out.push(path.join(env.HOME, '.cache', 'midcert'));
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
  const tmp = env.TMPDIR && path.isAbsolute(env.TMPDIR) ? env.TMPDIR : os.tmpdir();
  out.push(path.join(tmp, `midcert-${uid}`));
  return [...new Set(out)];
}

/** Makes `dir` (and missing parents) and checks it is ours and private; throws when it cannot be. */
function ensurePrivateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (st.uid !== uid) throw new Error(`${dir} is owned by uid ${st.uid}, not ${uid}`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  return dir;
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

function sameContent(file, digest) {
  let st;
  try {
    st = fs.lstatSync(file);
  } catch {
    return false;
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isFile() || st.uid !== uid) return false;
  return sha256(fs.readFileSync(file)) === digest;
}

function writeAtomic(file, data) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o500);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Extracts (when needed) and loads one embedded addon; returns its exports. The same asset is
 * loaded once per process.
 *
 * @param {string} assetKey   SEA asset key, e.g. "native/better_sqlite3.node"
 * @param {string} stem       file name stem, e.g. "better_sqlite3"
 * @param {{ getAsset?: (key: string) => Buffer, dlopen?: (file: string) => unknown, env?: NodeJS.ProcessEnv }} [io]
 */
function loadEmbeddedAddon(assetKey, stem, io = {}) {
  const cached = loaded.get(assetKey);
  if (cached && !io.getAsset) return cached.exports;
  const getAsset = io.getAsset || defaultGetAsset;
  const dlopen = io.dlopen || defaultDlopen;
  const env = io.env || process.env;
  const data = getAsset(assetKey);
  const digest = sha256(data);
  const name = `${stem}-${digest.slice(0, 16)}.node`;
  const problems = [];
  for (const candidate of cacheDirCandidates(env)) {
    let file;
    try {
      const dir = ensurePrivateDir(candidate);
      file = path.join(dir, name);
      if (!sameContent(file, digest)) {
        fs.rmSync(file, { force: true });
        writeAtomic(file, data);
      }
    } catch (err) {
      problems.push(`${candidate}: ${err && err.message ? err.message : err}`);
      continue;
    }
    try {
      const exports = dlopen(file);
      loaded.set(assetKey, { file, exports });
      return exports;
    } catch (err) {
      // e.g. a noexec mount: try the next candidate
      problems.push(`${file}: ${err && err.message ? err.message : err}`);
    }
  }
  throw new Error(`cannot load the embedded native addon ${assetKey}; set MIDCERT_CACHE_DIR to a private, writable directory on an exec-allowed file system (${problems.join('; ')})`);
}

/** Where an asset was extracted in this process (for diagnostics and tests). */
function extractedPath(assetKey) {
  const entry = loaded.get(assetKey);
  return entry ? entry.file : undefined;
}

module.exports = { loadEmbeddedAddon, cacheDirCandidates, extractedPath };
