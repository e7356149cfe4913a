import { Command } from 'commander';
import { printJson, readInput, resolvePassword } from '../../common/cli.js';
import { LIMITS } from '../../common/limits.js';

interface ShowOptions {
  keystore: string;
  storepass?: string;
  storepassFile?: string;
  passwordFile?: string;
  json?: boolean;
}

export const DEFAULT_STOREPASS = 'changeit';

export function keystoreCommand(): Command {
  const keystore = new Command('keystore').description('read the MID keystore (JKS or PKCS12, as keytool writes them)');
  keystore.command('show')
    .description('list entries with alias, kind and certificate chain; the store password is checked against the keystore integrity digest')
    .requiredOption('--keystore <file>', 'e.g. <mid home>/agent/security/agent_keystore')
    .option('--storepass <p>', 'store password (default "changeit"; prefer --storepass-file or MIDCERT_STOREPASS)')
    .option('--storepass-file <file>', 'read the store password from a file')
    .option('--password-file <file>', 'same as --storepass-file')
    .option('--json', 'print {"type":"JKS|PKCS12","entries":[{"alias","kind","chain":[{"subject","issuer","serial","notBefore","notAfter","sha256"}]}]}')
    .action(async (options: ShowOptions) => {
      const { keystoreToJson, readKeystore } = await import('../../pki/keystore.js');
      const password = await resolvePassword({ file: options.storepassFile ?? options.passwordFile, value: options.storepass, env: ['MIDCERT_STOREPASS', 'MIDCERT_PASSWORD'] });
      const store = readKeystore(await readInput(options.keystore, LIMITS.keystoreBytes, 'keystore'), password ?? DEFAULT_STOREPASS);
      const json = keystoreToJson(store);
      if (options.json) {
        printJson(json);
        return;
      }
      const lines = [`${options.keystore}: ${json.type}, ${json.entries.length} entr${json.entries.length === 1 ? 'y' : 'ies'}`];
      for (const entry of json.entries) {
        lines.push(`  ${entry.alias} (${entry.kind}), chain of ${entry.chain.length}`);
        entry.chain.forEach((c, i) => lines.push(`    [${i}] ${c.subject}\n        issuer ${c.issuer}\n        valid ${c.notBefore} → ${c.notAfter}  sha256 ${c.sha256}`));
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  return keystore;
}
