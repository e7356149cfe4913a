import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pgAvailable, startPostgres, type PgPeer } from './postgres.js';

/**
 * The PostgreSQL test peer itself (test/helpers/postgres.ts, scripts/peers/start-postgres.sh):
 * a real cluster, SCRAM passwords over 127.0.0.1, TLS verify-full against its own certificate,
 * isolated databases per createDatabase(). Not installed is a failure, not a skip.
 */

/** Whether PID is still running: gone, or a zombie waiting for init to reap it, counts as stopped. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/PID/stat: "pid (comm) STATE ..."; comm may hold spaces or parens, so take what follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  assert.fail('expected the call to fail');
}

describe('helpers: PostgreSQL test peer', function () {
  this.timeout(20_000);
  let peer: PgPeer;
  const clients: pg.Client[] = [];
  const connect = async (config: pg.ClientConfig): Promise<pg.Client> => {
    const client = new pg.Client({ host: peer.host, port: peer.port, connectionTimeoutMillis: 5_000, ...config });
    client.on('error', () => {}); // a server going away under an idle client is not this test's failure
    clients.push(client);
    await client.connect();
    return client;
  };
  const password = (file: string): string => readFileSync(file, 'utf8').trim();

  before(async function () {
    assert.ok(pgAvailable(), 'PostgreSQL is not installed (Debian package postgresql; sudo make deps)');
    peer = await startPostgres();
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})));
  });

  it('starts one cluster per process on 127.0.0.1 with its files in place', async () => {
    assert.equal(await startPostgres(), peer, 'startPostgres() is memoised');
    assert.equal(peer.host, '127.0.0.1');
    assert.ok(peer.port > 1024);
    assert.equal(peer.adminUser, 'midcert_admin');
    assert.equal(peer.adminUrl(), `postgresql://midcert_admin@127.0.0.1:${peer.port}/postgres`);
    assert.equal(peer.adminUrl('other'), `postgresql://midcert_admin@127.0.0.1:${peer.port}/other`);
    assert.match(peer.adminPassword, /^[0-9a-f]{48}$/);
    for (const f of ['admin.password', 'pgpass', 'server.key']) assert.equal(statSync(join(peer.dir, f)).mode & 0o777, 0o600, f);
    assert.equal(readFileSync(join(peer.dir, 'pgpass'), 'utf8'), `127.0.0.1:${peer.port}:*:midcert_admin:${peer.adminPassword}\n`);
    assert.match(readFileSync(peer.caFile, 'utf8'), /^-----BEGIN CERTIFICATE-----/);
    const hba = readFileSync(join(peer.dir, 'data/pg_hba.conf'), 'utf8');
    assert.doesNotMatch(hba.replace(/#.*$/gm, ''), /\btrust\b/);
  });

  it('lets the admin in with the right password, as superuser, durability off', async () => {
    const c = await connect({ user: peer.adminUser, password: peer.adminPassword, database: 'postgres' });
    const { rows } = await c.query<{ super: boolean; fsync: string; port: string; listen: string; sock: string }>(
      `SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super, current_setting('fsync') AS fsync,
              current_setting('port') AS port, current_setting('listen_addresses') AS listen,
              current_setting('unix_socket_directories') AS sock`,
    );
    assert.deepEqual(rows[0], { super: true, fsync: 'off', port: String(peer.port), listen: '127.0.0.1', sock: join(peer.dir, 'sock') });
  });

  it('refuses a wrong password (28P01)', async () => {
    const err = await rejection(connect({ user: peer.adminUser, password: 'not-the-password', database: 'postgres' }));
    assert.equal(err.code, '28P01');
    assert.match(err.message, /password authentication failed/);
  });

  it('accepts host connections without TLS and with TLS verified against server.crt', async () => {
    const sslQuery = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';
    const plain = await connect({ user: peer.adminUser, password: peer.adminPassword, database: 'postgres', ssl: false });
    assert.equal((await plain.query<{ ssl: boolean }>(sslQuery)).rows[0]?.ssl, false);
    const ca = readFileSync(peer.caFile);
    const tls = await connect({ user: peer.adminUser, password: peer.adminPassword, database: 'postgres', ssl: { ca, servername: 'localhost' } });
    assert.equal((await tls.query<{ ssl: boolean }>(sslQuery)).rows[0]?.ssl, true);
    // verify-full really verifies: a name the certificate does not carry is refused.
    const err = await rejection(connect({ user: peer.adminUser, password: peer.adminPassword, database: 'postgres', ssl: { ca, servername: 'db.example.test' } }));
    assert.match(err.message, /does not match|altnames/i);
  });

  it('createDatabase gives each caller its own role and database, isolated from the others', async () => {
    const a = await peer.createDatabase('store_test');
    const b = await peer.createDatabase('store_test');
    assert.notEqual(a.name, b.name);
    assert.equal(a.url, `postgresql://${a.user}@127.0.0.1:${peer.port}/${a.name}`);
    assert.doesNotMatch(a.url, /:[^/@]*@/, 'no password in the url');
    assert.equal(statSync(a.passwordFile).mode & 0o777, 0o600);

    const ca = await connect({ user: a.user, password: password(a.passwordFile), database: a.name });
    const cb = await connect({ user: b.user, password: password(b.passwordFile), database: b.name });
    const owner = await ca.query<{ owner: string; super: boolean }>(
      `SELECT pg_get_userbyid(datdba) AS owner, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super
         FROM pg_database WHERE datname = current_database()`,
    );
    assert.deepEqual(owner.rows[0], { owner: a.user, super: false });
    await ca.query('CREATE TABLE certs (id int PRIMARY KEY)');
    await ca.query('INSERT INTO certs VALUES (1)');
    assert.equal((await cb.query("SELECT to_regclass('public.certs') AS t")).rows[0].t, null, "b does not see a's table");
    await cb.query('CREATE TABLE certs (id int PRIMARY KEY)'); // same name, no clash
    assert.equal((await cb.query('SELECT count(*)::int AS n FROM certs')).rows[0].n, 0);

    const crossed = await rejection(connect({ user: a.user, password: password(a.passwordFile), database: b.name }));
    assert.equal(crossed.code, '42501', "a's role cannot even connect to b's database");
    const wrong = await rejection(connect({ user: b.user, password: password(a.passwordFile), database: b.name }));
    assert.equal(wrong.code, '28P01');
  });

  it('a process that exits without stop() leaves no cluster or dir behind', async () => {
    const child = `import { readFileSync } from 'node:fs';
import { startPostgres } from ${JSON.stringify(join(import.meta.dirname, 'postgres.ts'))};
const p = await startPostgres();
console.log(JSON.stringify({ dir: p.dir, pid: Number(readFileSync(p.dir + '/postgres.pid', 'utf8')) }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { timeout: 15_000 });
    const { dir, pid } = JSON.parse(stdout) as { dir: string; pid: number };
    assert.ok(pid > 0 && dir.startsWith('/'), stdout);
    assert.equal(running(pid), false, `postmaster ${pid} outlived its test process`);
    assert.equal(existsSync(dir), false, `${dir} outlived its test process`);
  });

  it('stop() stops the postmaster and removes the dir', async () => {
    const pid = Number(readFileSync(join(peer.dir, 'postgres.pid'), 'utf8').trim());
    assert.equal(Number(readFileSync(join(peer.dir, 'data/postmaster.pid'), 'utf8').split('\n')[0]), pid, 'postgres.pid is the postmaster');
    assert.ok(running(pid));
    await peer.stop();
    assert.equal(running(pid), false, `postmaster ${pid} still running`);
    assert.equal(existsSync(peer.dir), false);
    const err = await rejection(connect({ user: peer.adminUser, password: peer.adminPassword, database: 'postgres' }));
    assert.equal(err.code, 'ECONNREFUSED');
  });
});
