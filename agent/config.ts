import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { readBoundedText } from '../common/bounded-read.js';
import { parseYamlConfig } from '../common/config-file.js';
import { MidcertError } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';

/**
 * The agent's configuration (`/etc/midcert/agent.yaml`), validated where it enters. Documented
 * in docs/agent-config.md; keys under `mid`, `service`, `verify` and `stateDir` are a contract.
 */
import { defaultStateDir } from '../common/default-paths.js';

export { defaultConfigPath, defaultStateDir, programDataDir } from '../common/default-paths.js';

const argv = z.array(z.string().min(1)).min(1);
/** A key type label as pki/lint.ts keyTypeLabel() writes it: rsa-<bits>, ec-<curve>, ed25519, ... */
const KEY_TYPE_LABEL = /^(rsa-[0-9]{3,5}|ec-p(256|384|521)|ed25519|ed448)$/;

const schema = z.object({
  mid: z.object({
    home: z.string().min(1),
    keystore: z.string().min(1).optional(),
    storepassFile: z.string().min(1).optional(),
    storepassEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/).optional(),
    alias: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default('defaultsecuritykeypairhandle'),
    script: z.string().min(1).optional(),
    scriptTimeoutSeconds: z.number().int().positive().max(3600).default(120),
    logFile: z.string().min(1).default('agent/logs/agent0.log.0'),
    /** `-a` succeeds only with "Installed certificate with alias: <alias> into the MID keystore." (docs/agent-config.md). */
    requireImportSuccessLine: z.boolean().default(true),
  }).strict(),
  service: z.object({
    manager: z.enum(['systemd', 'sysv', 'mid-scripts', 'command', 'windows']),
    /** A unit/service name; spaces only for `windows` ("ServiceNow MID Server_mid01"). */
    unit: z.string().regex(/^[A-Za-z0-9@._:-][A-Za-z0-9@._: -]{0,127}$/).optional(),
    start: argv.optional(),
    stop: argv.optional(),
    status: argv.optional(),
    timeoutSeconds: z.number().int().positive().max(3600).default(120),
  }).strict(),
  verify: z.object({
    settleSeconds: z.number().min(0).max(3600).default(5),
    startTimeoutSeconds: z.number().positive().max(3600).default(120),
  }).strict().default({ settleSeconds: 5, startTimeoutSeconds: 120 }),
  subject: z.object({
    template: z.string().min(1).default('CN={midName}'),
    sans: z.array(z.string()).default([]),
    keyType: z.enum(['rsa', 'ec']).default('rsa'),
    keyBits: z.number().int().optional(),
  }).strict().default({ template: 'CN={midName}', sans: [], keyType: 'rsa' }),
  listen: z.object({
    address: z.string().regex(/^[^\s]+:\d{1,5}$/).optional(),
    socket: z.string().min(1).optional(),
    maxMessageBytes: z.number().int().positive().max(64 * 1024 * 1024).default(4 * 1024 * 1024),
  }).strict().default({ maxMessageBytes: 4 * 1024 * 1024 }),
  tls: z.object({
    cert: z.string().min(1),
    key: z.string().min(1),
    clientCa: z.string().min(1),
  }).strict().optional(),
  access: z.object({
    operators: z.array(z.string().min(1)).default([]),
    readers: z.array(z.string().min(1)).default([]),
  }).strict().default({ operators: [], readers: [] }),
  install: z.object({
    /**
     * Key types besides the vendor-documented RSA 2048 that install accepts (lint KEY_TYPE_UNVERIFIED),
     * e.g. ["rsa-3072", "rsa-4096", "ec-p256"]. docs/agent-config.md, docs/vendor-facts.md §4.
     */
    allowKeyTypes: z.array(z.string().regex(KEY_TYPE_LABEL)).max(16).default([]),
  }).strict().default({ allowKeyTypes: [] }),
  backups: z.object({ keep: z.number().int().min(1).max(100).default(5) }).strict().default({ keep: 5 }),
  preflight: z.object({
    /** Extra CA certificates (PEM) trusted for the instance connection, besides the system roots. */
    instanceCaFile: z.string().min(1).optional(),
    clockSkewSeconds: z.number().int().min(0).max(86_400).default(300),
    timeoutSeconds: z.number().positive().max(300).default(10),
  }).strict().default({ clockSkewSeconds: 300, timeoutSeconds: 10 }),
  stateDir: z.string().min(1).default(defaultStateDir()),
  log: z.object({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') }).strict().default({ level: 'info' }),
  /** Optional Prometheus `/metrics` of this host (local expiry, last install result); off unless `listen` is set. docs/monitoring.md. */
  metrics: z.object({ listen: z.string().regex(/^[^\s]+:\d{1,5}$/).optional() }).strict().optional(),
}).strict().superRefine((cfg, ctx) => {
  if (cfg.service.unit !== undefined && cfg.service.manager !== 'windows' && /\s/.test(cfg.service.unit)) {
    ctx.addIssue({ code: 'custom', path: ['service', 'unit'], message: 'a unit name holds no spaces (only Windows service names may)' });
  }
  if (cfg.service.manager === 'command') {
    for (const verb of ['start', 'stop', 'status'] as const) {
      if (!cfg.service[verb]) ctx.addIssue({ code: 'custom', path: ['service', verb], message: `required when service.manager is "command" (an argument array)` });
    }
  }
});

export type AgentConfig = z.infer<typeof schema>;

/**
 * Reads, validates and resolves an agent config file; relative paths are relative to its folder.
 * A regular file of at most LIMITS.agentConfigBytes (CONFIG_INVALID past it), else CONFIG_UNREADABLE.
 */
export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  const text = await readBoundedText(path, { what: 'the agent config', maxBytes: LIMITS.agentConfigBytes, unreadableCode: 'CONFIG_UNREADABLE', tooLargeCode: 'CONFIG_INVALID' });
  return parseAgentConfig(text, path);
}

export function parseAgentConfig(text: string, source: string): AgentConfig {
  const data = parseYamlConfig(text, source, schema);
  const cfg = resolvePaths(data, dirname(resolve(source)));
  // The MID's own keystore backups live in agent/security_backup/ (pruned to mid.keystore.max_backups,
  // with keystore_backup_audit_trail.log — docs/vendor-facts.md §14): ours must never land there,
  // nor anywhere else in the MID's agent/ tree where the MID or an upgrade may touch them.
  const agentDir = join(cfg.mid.home, 'agent');
  const rel = relative(agentDir, cfg.stateDir);
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
    throw new MidcertError('CONFIG_INVALID', `${source}: stateDir ${cfg.stateDir} is inside the MID's ${agentDir}; keep the agent state (and its keystore backups) outside the MID install, e.g. /var/lib/midcert-agent`);
  }
  return cfg;
}

function resolvePaths(cfg: AgentConfig, base: string): AgentConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...cfg,
    mid: { ...cfg.mid, home: abs(cfg.mid.home), storepassFile: cfg.mid.storepassFile && abs(cfg.mid.storepassFile) },
    tls: cfg.tls && { cert: abs(cfg.tls.cert), key: abs(cfg.tls.key), clientCa: abs(cfg.tls.clientCa) },
    listen: { ...cfg.listen, socket: cfg.listen.socket && abs(cfg.listen.socket) },
    preflight: { ...cfg.preflight, instanceCaFile: cfg.preflight.instanceCaFile && abs(cfg.preflight.instanceCaFile) },
    stateDir: abs(cfg.stateDir),
  };
}
