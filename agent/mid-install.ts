import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readBoundedText } from '../common/bounded-read.js';
import { MidcertError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import type { AgentConfig } from './config.js';

/** Where everything of one MID install lives, decided by the agent's config (never by a caller). */
export interface MidPaths {
  home: string;
  agentDir: string;
  configXml: string;
  keystore: string;
  script: string;
  log: string;
}

const KEYSTORE_CANDIDATES = ['agent/security/agent_keystore', 'agent/security/agent_keystore.jks'];

/**
 * The vendor script inside the MID home: manage-certificates.sh on Linux,
 * agent\bin\scripts\manage-certificates.bat on Windows (run through cmd.exe, agent/windows/cmd.ts).
 */
export function defaultScript(platform: NodeJS.Platform = process.platform): string {
  return platform === 'win32' ? 'agent/bin/scripts/manage-certificates.bat' : 'agent/bin/scripts/manage-certificates.sh';
}

export async function resolveMidPaths(cfg: AgentConfig): Promise<MidPaths> {
  const home = resolve(cfg.mid.home);
  const inHome = (p: string): string => resolve(home, p);
  return {
    home,
    agentDir: join(home, 'agent'),
    configXml: join(home, 'agent', 'config.xml'),
    keystore: cfg.mid.keystore ? inHome(cfg.mid.keystore) : await detectKeystore(home),
    script: inHome(cfg.mid.script ?? defaultScript()),
    log: inHome(cfg.mid.logFile),
  };
}

/** Vendor docs say agent_keystore, some guides agent_keystore.jks: take whichever exists. */
async function detectKeystore(home: string): Promise<string> {
  for (const candidate of KEYSTORE_CANDIDATES) {
    const path = join(home, candidate);
    if (await access(path).then(() => true, () => false)) return path;
  }
  return join(home, KEYSTORE_CANDIDATES[0] as string);
}

export const DEFAULT_STOREPASS = 'changeit';

/** The store password from the configured file or environment variable, else "changeit". */
export async function resolveStorepass(cfg: AgentConfig): Promise<string> {
  if (cfg.mid.storepassFile) {
    // Bounded before reading (CONFIG_INVALID past 4 KiB); a FIFO or device there is CONFIG_UNREADABLE.
    const text = await readBoundedText(cfg.mid.storepassFile, {
      what: 'mid.storepassFile', maxBytes: LIMITS.passwordFileBytes, unreadableCode: 'CONFIG_UNREADABLE', tooLargeCode: 'CONFIG_INVALID',
    });
    return text.replace(/\r?\n$/, '');
  }
  if (cfg.mid.storepassEnv) {
    const value = process.env[cfg.mid.storepassEnv];
    if (value === undefined) throw new MidcertError('CONFIG_INVALID', `mid.storepassEnv names ${cfg.mid.storepassEnv}, which is not set`);
    return value;
  }
  return DEFAULT_STOREPASS;
}
