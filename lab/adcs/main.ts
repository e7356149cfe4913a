/**
 * Runs the ADCS lab in the foreground: `tsx lab/adcs/main.ts <config.json>`.
 * Prints one JSON line `{"url": "..."}` on stdout once listening; SIGTERM/SIGINT close it
 * cleanly (exit 0). Errors go to stderr with exit 1 (2 for usage).
 */
import { loadAdcsConfig } from './config.js';
import { startAdcs } from './index.js';

async function main(argv: string[]): Promise<number> {
  const file = argv[0];
  if (!file || argv.length !== 1) {
    process.stderr.write('usage: adcs-lab <config.json>\n');
    return 2;
  }
  const adcs = await startAdcs(await loadAdcsConfig(file));
  process.stdout.write(`${JSON.stringify({ url: adcs.url })}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await adcs.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`adcs-lab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
