import { Command } from 'commander';
import { EXIT_CODES_HELP } from '../../common/cli.js';
import { VERSION } from '../../common/version.js';
import { bundleCommand } from './bundle-command.js';
import { certCommand } from './cert-command.js';
import { csrCommand } from './csr-command.js';
import { keystoreCommand } from './keystore-command.js';
import { serviceCommand } from './service-command.js';
import { installCommand, preflightCommand, rollbackCommand, runCommand, statusCommand } from './host-commands.js';

/**
 * The midcert-agent command tree: every command's options and help, nothing else. The command
 * files are light (commander and common/ only); what a command runs is imported inside its action
 * (`await import(…)`), so --version and --help never load node-forge, gRPC, pino or the config code.
 * test/agent/cli-startup.test.ts checks both.
 */
export function agentProgram(): Command {
  return new Command('midcert-agent')
    .description('midcert host agent: the MID host daemon (run) and host-local tools for keys, CSRs, bundles, keystores, status and installs')
    .version(VERSION)
    .addCommand(csrCommand())
    .addCommand(bundleCommand())
    .addCommand(keystoreCommand())
    .addCommand(certCommand())
    .addCommand(runCommand())
    .addCommand(statusCommand())
    .addCommand(installCommand())
    .addCommand(rollbackCommand())
    .addCommand(preflightCommand())
    .addCommand(serviceCommand())
    .addHelpText('after', EXIT_CODES_HELP);
}
