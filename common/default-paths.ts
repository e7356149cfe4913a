import { win32 } from 'node:path';

/**
 * The agent's platform defaults (agent/config.ts, agent/cli), in a module with no dependencies so
 * `midcert-agent --help` can name them at once:
 * /etc/midcert/agent.yaml and /var/lib/midcert-agent, and on Windows %ProgramData%\midcert\agent.yaml
 * and %ProgramData%\midcert\state.
 */
export function programDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return win32.join(env.ProgramData ?? env.PROGRAMDATA ?? 'C:\\ProgramData', 'midcert');
}

export function defaultStateDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  return platform === 'win32' ? win32.join(programDataDir(env), 'state') : '/var/lib/midcert-agent';
}

export function defaultConfigPath(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  return platform === 'win32' ? win32.join(programDataDir(env), 'agent.yaml') : '/etc/midcert/agent.yaml';
}
