/**
 * `node lab/instance/main.js CONFIG.json`: starts the lab instance in the foreground, prints
 * `{"url":"https://127.0.0.1:PORT"}` on stdout once listening, and shuts down cleanly (state
 * written, log closed, exit 0) on SIGTERM or SIGINT. Errors go to stderr with exit status 1
 * (2 for bad usage). See docs/lab/instance.md.
 */
import { loadInstanceConfig } from './config.js';
import { startInstance } from './instance.js';

async function main(argv: string[]): Promise<void> {
  if (argv.length !== 1 || argv[0]?.startsWith('-')) {
    process.stderr.write('usage: main CONFIG.json\n');
    process.exitCode = 2;
    return;
  }
  const options = await loadInstanceConfig(argv[0] as string);
  if (options.log === undefined) options.log = (line) => process.stderr.write(`${line}\n`);
  const instance = await startInstance(options);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    instance.close().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`lab instance: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ url: instance.url })}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`lab instance: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
