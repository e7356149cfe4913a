/**
 * A real PostgreSQL for tests: one throwaway cluster per test process, started by
 * scripts/peers/start-postgres.sh in a temp dir on a free 127.0.0.1 port (scram-sha-256 for
 * every connection, TLS on with DIR/server.crt as its own CA) and stopped by
 * scripts/peers/stop.sh when the process exits, whatever happened.
 *
 *   const pg = await startPostgres();            // memoised: every caller gets the same cluster
 *   const db = await pg.createDatabase('store'); // a fresh role + database owned by it
 *
 * As root (how the suite runs here) the cluster runs as the Debian user `postgres`, so the temp
 * dir is handed to that user; root can still read everything in it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
const PEERS = resolve(import.meta.dirname, '../../scripts/peers');
const ADMIN_USER = 'midcert_admin';

export interface PgDatabase {
  /** Database name; also the name of the role that owns it. */
  name: string;
  /** postgresql://ROLE@127.0.0.1:PORT/NAME (no password in it). */
  url: string;
  /** The owning role (LOGIN, not superuser). */
  user: string;
  /** The role's password, alone in a 0600 file in the peer's dir. */
  passwordFile: string;
}

export interface PgPeer {
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  dir: string;
  /** DIR/server.crt: the self-signed server certificate, the CA for verify-full (CN/SAN localhost, SAN IP 127.0.0.1). */
  caFile: string;
  /** postgresql://midcert_admin@127.0.0.1:PORT/DB (no password in it). */
  adminUrl(db?: string): string;
  /** A fresh role and a database owned by it, named PREFIX_N; PUBLIC cannot connect to it. */
  createDatabase(prefix: string): Promise<PgDatabase>;
  /** Stops the cluster (by its recorded PID) and removes its dir; the next startPostgres() starts a new one. */
  stop(): Promise<void>;
}

/** The PostgreSQL bin dir the start script will use (pg_config --bindir, else the newest /usr/lib/postgresql/N/bin), or undefined. */
function binDir(): string | undefined {
  const usable = (dir: string): boolean => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'));
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dir && usable(dir)) return dir;
  } catch {
    // no pg_config (libpq-dev): fall through to the Debian layout
  }
  let versions: string[] = [];
  try {
    versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  return versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find(usable);
}

/** Whether the PostgreSQL server binaries are installed. Tests use it to fail with a clear message, never to skip. */
export function pgAvailable(): boolean {
  return binDir() !== undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

/** uid/gid of the Debian `postgres` user, when we are root (PostgreSQL refuses to run as root). */
function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root but there is no `postgres` user to run the test cluster as (Debian package postgresql; sudo make deps)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function stopSync(dir: string): void {
  try {
    execFileSync('bash', [join(PEERS, 'stop.sh'), dir], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // best effort at exit
  }
  rmSync(dir, { recursive: true, force: true });
}

async function launch(): Promise<PgPeer> {
  if (!pgAvailable()) throw new Error('PostgreSQL is not installed (Debian package postgresql; sudo make deps): the PostgreSQL store tests need a real server');
  const owner = postgresOwner();
  let lastError: unknown;
  // The port is free when picked but not reserved: another process can take it before postgres
  // binds it, so a bind failure is retried on a new port (and a fresh dir).
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dir = await mkdtemp(join(tmpdir(), 'midcert-pg-'));
    if (owner) chownSync(dir, owner.uid, owner.gid); // 0700, the postgres user's; root reads it anyway
    else chmodSync(dir, 0o700);
    const onExit = (): void => stopSync(dir);
    process.on('exit', onExit);
    const port = await freePort();
    try {
      await run('bash', [join(PEERS, 'start-postgres.sh'), dir, String(port)], { timeout: 30_000 });
    } catch (err) {
      lastError = err;
      const log = (() => {
        try {
          return readFileSync(join(dir, 'postgres.log'), 'utf8');
        } catch {
          return '';
        }
      })();
      process.removeListener('exit', onExit);
      stopSync(dir);
      if (/could not bind|address already in use/i.test(log)) continue;
      break;
    }
    return makePeer(dir, port, onExit);
  }
  const stderr = (lastError as { stderr?: string } | undefined)?.stderr?.trim();
  throw new Error(`the PostgreSQL test peer did not start${stderr ? `: ${stderr}` : ''}`, { cause: lastError });
}

function makePeer(dir: string, port: number, onExit: () => void): PgPeer {
  const host = '127.0.0.1';
  const adminPassword = readFileSync(join(dir, 'admin.password'), 'utf8').trim();
  let counter = 0;
  let stopped: Promise<void> | undefined;
  const url = (user: string, db: string): string => `postgresql://${encodeURIComponent(user)}@${host}:${port}/${encodeURIComponent(db)}`;
  const peer: PgPeer = {
    host,
    port,
    adminUser: ADMIN_USER,
    adminPassword,
    dir,
    caFile: join(dir, 'server.crt'),
    adminUrl: (db = 'postgres') => url(ADMIN_USER, db),
    async createDatabase(prefix: string): Promise<PgDatabase> {
      if (!/^[a-z_][a-z0-9_]*$/.test(prefix)) throw new Error(`createDatabase: prefix must be a lower-case SQL identifier ([a-z_][a-z0-9_]*), not ${JSON.stringify(prefix)}`);
      counter += 1;
      const suffix = `_${counter}`;
      const name = prefix.slice(0, 63 - suffix.length) + suffix;
      const password = randomBytes(18).toString('base64url');
      const passwordFile = join(dir, `${name}.password`);
      writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
      const admin = new pg.Client({ host, port, user: ADMIN_USER, password: adminPassword, database: 'postgres' });
      await admin.connect();
      try {
        const id = pg.escapeIdentifier(name);
        await admin.query(`CREATE ROLE ${id} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
        await admin.query(`CREATE DATABASE ${id} OWNER ${id}`);
        await admin.query(`REVOKE ALL ON DATABASE ${id} FROM PUBLIC`);
      } finally {
        await admin.end();
      }
      return { name, url: url(name, name), user: name, passwordFile };
    },
    stop(): Promise<void> {
      stopped ??= (async () => {
        if (current && (await current.catch(() => undefined)) === peer) current = undefined;
        await run('bash', [join(PEERS, 'stop.sh'), dir], { timeout: 10_000 });
        process.removeListener('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  return peer;
}

let current: Promise<PgPeer> | undefined;

/** The test process's PostgreSQL cluster, started on first use (stopped and removed at process exit). */
export function startPostgres(): Promise<PgPeer> {
  if (!current) {
    const starting = launch();
    current = starting;
    starting.catch(() => {
      if (current === starting) current = undefined; // a failed start is not memoised
    });
  }
  return current;
}
