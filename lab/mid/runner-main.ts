import { parseArgs } from 'node:util';
import { STOREPASS_ENV } from './constants.js';
import { createMidRunner } from './runner.js';

/**
 * The MID runner process:
 *   node --import tsx lab/mid/runner-main.ts --socket DIR/mid-runner.sock --ca-file ROOT.pem
 *        [--time-scale 1] [--poll-ms N] [--connection-max-age-ms N] [--log-format old|tokyo]
 *        [--alias-conflict warn|fail] [--register UNIT=HOME ...]
 * --time-scale multiplies every vendor timing (poll 40 s, start 30 s); --poll-ms overrides the poll
 * period alone (--heartbeat-ms is its old name).
 * Prints one "listening" line on stdout when the socket is ready; stops every MID and exits 0 on
 * SIGTERM, SIGINT or the control verb `shutdown`. Keystore password for --register units:
 * $MIDCERT_LAB_STOREPASS, else changeit.
 */

const USAGE = 'usage: runner-main.ts --socket PATH --ca-file PEM [--time-scale F] [--poll-ms N] [--connection-max-age-ms N] [--log-format old|tokyo] [--alias-conflict warn|fail] [--register UNIT=HOME ...]';

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv, strict: true,
      options: {
        socket: { type: 'string' }, 'ca-file': { type: 'string' }, 'heartbeat-ms': { type: 'string' }, 'poll-ms': { type: 'string' },
        'time-scale': { type: 'string' }, 'log-format': { type: 'string' }, 'alias-conflict': { type: 'string' },
        'connection-max-age-ms': { type: 'string' }, register: { type: 'string', multiple: true },
      },
    }));
  } catch (err) {
    process.stderr.write(`mid-runner: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!values.socket || !values['ca-file']) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const pollText = values['poll-ms'] ?? values['heartbeat-ms'];
  const timings = {
    ...(pollText ? { pollMs: positiveInt(pollText, 'poll-ms') } : {}),
    ...(values['connection-max-age-ms'] ? { connectionMaxAgeMs: positiveInt(values['connection-max-age-ms'], 'connection-max-age-ms') } : {}),
  };
  const timeScale = values['time-scale'] === undefined ? 1 : Number(values['time-scale']);
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new Error('--time-scale must be a positive number');
  const logFormat = values['log-format'] ?? 'old';
  if (logFormat !== 'old' && logFormat !== 'tokyo') throw new Error('--log-format must be old or tokyo');
  const aliasConflict = values['alias-conflict'] ?? 'warn';
  if (aliasConflict !== 'warn' && aliasConflict !== 'fail') throw new Error('--alias-conflict must be warn or fail');
  const runner = await createMidRunner({ caFile: values['ca-file'], timeScale, timings, logFormat, aliasConflict });
  for (const spec of values.register ?? []) {
    const at = spec.indexOf('=');
    if (at <= 0) throw new Error(`--register wants UNIT=HOME, got "${spec}"`);
    runner.register(spec.slice(0, at), spec.slice(at + 1), process.env[STOREPASS_ENV] || undefined);
  }
  let closing = false;
  const shutdown = (): void => {
    if (closing) return;
    closing = true;
    runner.close().then(() => process.exit(0), () => process.exit(1));
  };
  await runner.listen(values.socket, shutdown);
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`mid-runner: listening on ${values.socket} (pid ${process.pid})\n`);
  return -1; // keep running
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${what} must be a positive integer`);
  return n;
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exit(code); }, (err: Error) => {
  process.stderr.write(`mid-runner: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
