#!/usr/bin/env node
import { Command } from 'commander';
import { EXIT_CODES_HELP, runProgram } from '../../common/cli.js';
import { VERSION } from '../../common/version.js';
import { bundleCommand } from './bundle-command.js';
import { certCommand } from './cert-command.js';
import { csrCommand } from './csr-command.js';
import { keystoreCommand } from './keystore-command.js';
import { installCommand, preflightCommand, rollbackCommand, runCommand, statusCommand } from './host-commands.js';

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
    .addHelpText('after', EXIT_CODES_HELP);
}

process.exitCode = await runProgram(agentProgram(), process.argv);
