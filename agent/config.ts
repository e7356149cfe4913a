import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { readBoundedText } from '../common/bounded-read.js';
import { parseYamlConfig } from '../common/config-file.js';
import { LIMITS } from '../common/limits.js';

/**
 * The agent's configuration (`/etc/midcert/agent.yaml`), validated where it enters. Documented
 * in docs/agent-config.md; keys under `mid`, `service`, `verify` and `stateDir` are a contract.
 */
const argv = z.array(z.string().min(1)).min(1);

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
  }).strict(),
  service: z.object({
    manager: z.enum(['systemd', 'sysv', 'mid-scripts', 'command']),
    unit: z.string().regex(/^[A-Za-z0-9@._:-]{1,128}$/).optional(),
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
  backups: z.object({ keep: z.number().int().min(1).max(100).default(5) }).strict().default({ keep: 5 }),
  preflight: z.object({
    /** Extra CA certificates (PEM) trusted for the instance connection, besides the system roots. */
    instanceCaFile: z.string().min(1).optional(),
    clockSkewSeconds: z.number().int().min(0).max(86_400).default(300),
    timeoutSeconds: z.number().positive().max(300).default(10),
  }).strict().default({ clockSkewSeconds: 300, timeoutSeconds: 10 }),
  stateDir: z.string().min(1).default('/var/lib/midcert-agent'),
  log: z.object({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') }).strict().default({ level: 'info' }),
}).strict().superRefine((cfg, ctx) => {
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
  return resolvePaths(data, dirname(resolve(source)));
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
