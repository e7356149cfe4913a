import { Command } from 'commander';
import { printJson } from '../../common/cli.js';
import type { GlobalOptions } from './context.js';
import { renderTable } from './output.js';

interface MigrateOptions {
  from: string;
  to: string;
  passwordFile?: string;
  tlsMode?: 'disable' | 'require' | 'verify-full';
  tlsCaFile?: string;
  json?: boolean;
}

/** `midcert store migrate` and `midcert store status` (docs/controller-cli.md, docs/controller-state.md). */
export function storeCommand(globals: () => GlobalOptions): Command {
  const migrate = new Command('migrate')
    .description('copy an install\'s database into an empty one (ids kept), e.g. from the SQLite file to PostgreSQL')
    .requiredOption('--from <db>', 'source: sqlite:FILE (e.g. sqlite:~/.midcert/midcert.db) or postgresql://user@host:5432/db')
    .requiredOption('--to <db>', 'target (must be empty): postgresql://user@host:5432/db or sqlite:FILE')
    .option('--password-file <file>', 'password of the PostgreSQL user (default: store.passwordFile, else PGPASSFILE / ~/.pgpass)')
    .option('--tls-mode <mode>', 'TLS to PostgreSQL: disable | require | verify-full (default: store.tls, else off for loopback, verify-full otherwise)')
    .option('--tls-ca-file <file>', 'CA certificate(s) that sign the PostgreSQL server certificate')
    .option('--json', 'print {"ok","from","to","schemaVersion","rows":{table: n}}')
    .addHelpText('after', `
Stop midcert serve and running commands first: a job run by a live process is refused
(JOB_CONFLICT). The target must hold no agents, jobs or certificates (STORE_NOT_EMPTY). The copy
is one transaction: on any failure the target stays empty. Afterwards point controller.yaml at
the new database (store.url, store.passwordFile) and start the controllers again.

Example:
  midcert store migrate --from sqlite:$HOME/.midcert/midcert.db \\
    --to postgresql://midcert@db.example.com:5432/midcert --password-file /etc/midcert/pg.password`)
    .action(async (o: MigrateOptions) => runMigrate(globals(), o));
  const status = new Command('status')
    .description('where the store lives, its schema version, the serve leader and the processes running jobs')
    .option('--json', 'print {"backend","location","schemaVersion","leader","owners","unfinishedJobs"}')
    .action(async (o: { json?: boolean }) => runStatus(globals(), o));
  return new Command('store').description('the controller database: migrate it, show who leads and who runs jobs').addCommand(migrate).addCommand(status);
}

async function runMigrate(globals: GlobalOptions, o: MigrateOptions): Promise<void> {
  const [{ existsSync }, { openDatabaseAt }, { copyStore }, { loadStoreSettings }] = await Promise.all([
    import('node:fs'), import('../store/index.js'), import('../store/copy.js'), import('./store-settings.js'),
  ]);
  const { MidcertError } = await import('../../common/errors.js');
  const source = o.from.startsWith('sqlite:') ? o.from.slice('sqlite:'.length) : undefined;
  if (source !== undefined && !existsSync(source)) throw new MidcertError('INPUT_UNREADABLE', `--from: ${source} does not exist`);
  if (o.tlsMode && !['disable', 'require', 'verify-full'].includes(o.tlsMode)) throw new MidcertError('USAGE', '--tls-mode is disable, require or verify-full');
  const settings = await loadStoreSettings(globals, o);
  const from = await openDatabaseAt(o.from, settings);
  try {
    const to = await openDatabaseAt(o.to, settings);
    try {
      const report = await copyStore(from, to, () => new Date().toISOString(), (table, rows) => {
        if (!o.json) process.stderr.write(`  ${table}: ${rows} row(s)\n`);
      });
      if (o.json) printJson({ ok: true, ...report });
      else {
        process.stdout.write(renderTable(['table', 'rows'], Object.entries(report.rows).map(([t, n]) => [t, String(n)])));
        process.stdout.write(`copied ${report.from} → ${report.to} (schema ${report.schemaVersion}); set store.url in controller.yaml to use it\n`);
      }
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

async function runStatus(globals: GlobalOptions, o: { json?: boolean }): Promise<void> {
  const { openContext } = await import('./context.js');
  const { storeStatus } = await import('./store-settings.js');
  const ctx = await openContext(globals, { instance: false });
  try {
    const status = await storeStatus(ctx.store);
    if (o.json) printJson(status);
    else {
      process.stdout.write(`${status.backend} ${status.location} (schema ${status.schemaVersion})\n`);
      process.stdout.write(`serve leader: ${status.leader ? `${status.leader.owner} since ${status.leader.since}` : 'none'}\n`);
      process.stdout.write(renderTable(['job', 'kind', 'state', 'owner'], status.unfinishedJobs.map((j) => [String(j.id), j.kind, j.state, j.owner])));
    }
  } finally {
    await ctx.close();
  }
}
