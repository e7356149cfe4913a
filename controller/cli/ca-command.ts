import { Command } from 'commander';
import { EXIT, printJson } from '../../common/cli.js';
import type { GlobalOptions } from './context.js';
import { renderTable } from './output.js';

/** `midcert ca probe`: one authenticated GET of the CA's start page (docs/controller-cli.md). */
export function caCommand(globals: () => GlobalOptions): Command {
  const probe = new Command('probe')
    .description('GET the CA\'s start page with the configured ca.auth (basic | negotiate | ntlm | client-cert), once, never retried')
    .option('--json', 'print {"ok","type","url","auth","authenticated","code","message"}')
    .addHelpText('after', '\nExit status: 0 only when authenticated; 1 authentication or HTTP failure; 3 bad config; 5 CA unreachable.')
    .action(async (o: { json?: boolean }) => {
      const [{ probeCa }, { loadControllerConfig, resolveDataDir }] = await Promise.all([import('../ca/index.js'), import('../config.js')]);
      const cfg = await loadControllerConfig(resolveDataDir(globals().dataDir));
      const result = await probeCa(cfg.ca);
      if (o.json) printJson(result);
      else process.stdout.write(renderTable(['type', 'url', 'auth', 'authenticated', 'code', 'message'], [[result.type, result.url, result.auth, result.authenticated ? 'yes' : 'no', result.code, result.message]]));
      if (!result.authenticated) {
        process.exitCode = result.code === 'CA_UNREACHABLE' ? EXIT.unreachable : result.code.startsWith('CONFIG_') ? EXIT.input : EXIT.findings;
      }
    });
  return new Command('ca').description('the CA adapter: probe authentication').addCommand(probe);
}
