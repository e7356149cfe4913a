import { Command } from 'commander';
import { printJson } from '../../common/cli.js';
import type { GlobalOptions } from './context.js';

interface InitOptions {
  caType?: string;
  caDir?: string;
  caUrl?: string;
  instanceUrl?: string;
  instanceUsername?: string;
  instancePasswordFile?: string;
  instanceCaFile?: string;
  json?: boolean;
}

export function initCommand(globals: () => GlobalOptions): Command {
  return new Command('init')
    .description('create the data dir: controller.yaml, the SQLite state, the fleet CA for controller↔agent mTLS and the controller identity (idempotent)')
    .option('--ca-type <type>', 'MID CA adapter for a new controller.yaml: local | adcs | cfssl | exec | est', 'local')
    .option('--ca-dir <dir>', 'local CA folder (root/intermediate .pem/.key, chain.pem); default <data-dir>/ca, created if missing')
    .option('--ca-url <url>', 'CA URL for adcs, cfssl or est')
    .option('--instance-url <url>', 'ServiceNow instance URL')
    .option('--instance-username <user>', 'instance REST user (needs rights on the certificate tables)')
    .option('--instance-password-file <file>', 'file holding the instance password')
    .option('--instance-ca-file <file>', 'extra trust anchors for the instance (private CAs, labs)')
    .option('--json', 'print {"ok","dataDir","created","fleetCaFile","controllerCertFile","configFile","warnings"}')
    .action(async (options: InitOptions) => {
      const [{ initLocalCa }, { controllerConfigPath, resolveDataDir }, { initDataDir }, { fleetPaths }] = await Promise.all([
        import('../ca/local.js'), import('../config.js'), import('../data-dir.js'), import('../fleet-ca.js'),
      ]);
      const dataDir = resolveDataDir(globals().dataDir);
      const result = await initDataDir(dataDir, { configText: configText(options) });
      if (options.caType === 'local' || options.caType === undefined) await initLocalCa(dataDir, { dir: options.caDir });
      const fleet = fleetPaths(dataDir);
      const out = { ok: true, dataDir, created: result.changed, createdFiles: result.created, fleetCaFile: fleet.caCert, controllerCertFile: fleet.controllerCert, configFile: controllerConfigPath(dataDir), warnings: result.warnings };
      if (options.json) printJson(out);
      else process.stdout.write(`${result.message}\n${result.warnings.map((w) => `warning: ${w}\n`).join('')}`);
    });
}

/** A controller.yaml from the flags, or undefined to let init write its documented template. */
function configText(o: InitOptions): string | undefined {
  if (!o.instanceUrl && !o.caDir && !o.caUrl && (o.caType ?? 'local') === 'local') return undefined;
  const lines = ['# midcert controller configuration (see docs/controller-config.md)', 'ca:', `  type: ${o.caType ?? 'local'}`];
  if (o.caDir) lines.push(`  dir: ${JSON.stringify(o.caDir)}`);
  if (o.caUrl) lines.push(`  url: ${JSON.stringify(o.caUrl)}`);
  if (o.instanceUrl) {
    lines.push('instance:', `  url: ${JSON.stringify(o.instanceUrl)}`);
    if (o.instanceUsername) lines.push(`  username: ${JSON.stringify(o.instanceUsername)}`);
    if (o.instancePasswordFile) lines.push(`  passwordFile: ${JSON.stringify(o.instancePasswordFile)}`);
    if (o.instanceCaFile) lines.push(`  caFile: ${JSON.stringify(o.instanceCaFile)}`);
  }
  return `${lines.join('\n')}\n`;
}
