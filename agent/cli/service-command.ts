import { Command } from 'commander';
import { paint, printJson, useColor } from '../../common/cli.js';
import { DEFAULT_CONFIG } from './host-commands.js';

/** `midcert-agent service install|uninstall`: the agent as a Windows service through WinSW (agent/windows/service-install.ts, docs/windows.md). */
export function serviceCommand(): Command {
  const cmd = new Command('service').description('register the agent itself as a Windows service (WinSW wrapper), or remove it; on Linux use the systemd unit');
  cmd.command('install')
    .description('write <name>-service.xml and copy winsw.exe to <name>-service.exe next to midcert-agent.exe, then run "<name>-service.exe install"')
    .option('-c, --config <file>', `the agent config the service runs with (default $MIDCERT_AGENT_CONFIG or ${DEFAULT_CONFIG})`, DEFAULT_CONFIG)
    .option('--name <id>', 'service name (the wrapper and its XML are <name>-service.exe / .xml)', 'midcert-agent')
    .option('--display-name <text>', 'service display name (default "midcert agent")')
    .option('--account <account>', 'LocalSystem (default), NT AUTHORITY\\LocalService, NT AUTHORITY\\NetworkService or NT SERVICE\\<name>')
    .option('--wrapper <file>', 'the WinSW exe to use (default winsw.exe next to midcert-agent.exe)')
    .option('--json', 'print {"ok","name","wrapper","config","action"}')
    .action(async (o: { config: string; name: string; displayName?: string; account?: string; wrapper?: string; json?: boolean }) => {
      const { installService } = await import('../windows/service-install.js');
      const result = await installService({ config: o.config, name: o.name, displayName: o.displayName, account: o.account, wrapper: o.wrapper, ...(await agentExe()) });
      report(result, o.json);
    });
  cmd.command('uninstall')
    .description('run "<name>-service.exe stop" and "uninstall", then remove <name>-service.exe(.config) and <name>-service.xml')
    .option('--name <id>', 'service name', 'midcert-agent')
    .option('--json', 'print {"ok","name","wrapper","config","action"}')
    .action(async (o: { name: string; json?: boolean }) => {
      const { uninstallService } = await import('../windows/service-install.js');
      report(await uninstallService({ name: o.name, ...(await agentExe()) }), o.json);
    });
  return cmd;
}

/** The exe the service starts: this single executable, or node.exe plus the script when run from a checkout. */
async function agentExe(): Promise<{ exe: string; script?: string }> {
  let sea = false;
  try {
    sea = (await import('node:sea')).isSea();
  } catch {
    sea = false;
  }
  return sea || !process.argv[1] ? { exe: process.execPath } : { exe: process.execPath, script: process.argv[1] };
}

function report(r: { name: string; wrapper: string; config: string; action: string }, json?: boolean): void {
  if (json) { printJson(r); return; }
  const c = useColor(process.stdout);
  const what = r.action === 'install' ? `installed the Windows service "${r.name}" (start it with: sc.exe start ${r.name})` : `uninstalled the Windows service "${r.name}"`;
  process.stdout.write(`${paint('ok', 'green', c)} ${what}\n  wrapper ${r.wrapper}\n  config  ${r.config}\n`);
}
