import { Command } from 'commander';
import { EXIT_CODES_HELP } from '../../common/cli.js';
import { VERSION } from '../../common/version.js';
import { agentsCommand, identityCommand } from './agents-command.js';
import { caCommand } from './ca-command.js';
import type { GlobalOptions } from './context.js';
import { historyCommand, preflightCommand, rotateCaCommand, rotateCommand, statusCommand } from './fleet-commands.js';
import { initCommand } from './init-command.js';
import { loadHumanOutput } from './output.js';
import { bootstrapCommand, convertCommand, serveCommand } from './serve-command.js';
import { storeCommand } from './store-command.js';

/**
 * The midcert command tree: every command's options and help, nothing else. The command files are
 * light (commander and common/ only); the store (SQLite), config, CA adapters, instance client,
 * orchestrator and gRPC are imported inside each action (`await import(…)`), so --version and
 * --help answer at once. test/controller/cli-startup.test.ts checks both.
 */
export function controllerProgram(): Command {
  const program = new Command('midcert')
    .description('midcert controller: inventory, CA, ServiceNow instance and fleet-wide MID certificate rotation')
    .version(VERSION)
    .option('--data-dir <dir>', 'data dir (default $MIDCERT_DATA_DIR or ~/.midcert)')
    .option('--insecure-dev', 'talk to agents in plain text (agents started with --insecure-dev; development only)');
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  // Tables and progress bars load only when a command actually runs (not for --help/--version).
  program.hook('preAction', loadHumanOutput);
  return program
    .addCommand(initCommand(globals))
    .addCommand(identityCommand(globals))
    .addCommand(agentsCommand(globals))
    .addCommand(statusCommand(globals))
    .addCommand(preflightCommand(globals))
    .addCommand(caCommand(globals))
    .addCommand(rotateCommand(globals))
    .addCommand(rotateCaCommand(globals))
    .addCommand(convertCommand(globals))
    .addCommand(bootstrapCommand(globals))
    .addCommand(historyCommand(globals))
    .addCommand(serveCommand(globals))
    .addCommand(storeCommand(globals))
    .addHelpText('after', `${EXIT_CODES_HELP}\n\nJSON shapes: docs/controller-cli.md. Config: <data-dir>/controller.yaml (docs/controller-config.md).`);
}
