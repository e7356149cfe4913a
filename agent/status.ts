import { create, toJson, type JsonObject, type MessageInitShape } from '@bufbuild/protobuf';
import { readBoundedFile } from '../common/bounded-read.js';
import { MidcertError, isMidcertError, type ErrorCode } from '../common/errors.js';
import { execProgram } from '../common/exec.js';
import { LIMITS } from '../common/limits.js';
import { VERSION } from '../common/version.js';
import { daysLeft, type Certificate } from '../pki/certificate.js';
import { findEntry, readKeystore, type KeystoreEntry, type KeystoreType } from '../pki/keystore.js';
import { lintMaterial } from '../pki/lint.js';
import {
  AgentStatusSchema, type AgentInfoSchema, type CertificateStatusSchema, type CertificateSummarySchema, type ConfigStatusSchema,
  type ErrorInfoSchema, type KeystoreStatusSchema, type OperationResultSchema, type ServiceStatusSchema,
} from '../proto/gen/midcert/v1/agent_pb.js';
import type { AgentConfig } from './config.js';
import { hostInfo, type HostInfoInit } from './host-info.js';
import type { LastResult } from './journal.js';
import { readConfigXml, summarizeMidConfig, type AuthMode, type MidConfigSummary, type SettingKey } from './mid-config.js';
import type { MidPaths } from './mid-install.js';
import type { RenewalEngine } from './renewal/engine.js';
import type { ServiceManager } from './service-manager.js';

/**
 * GetStatus and `midcert-agent status`: what this host's MID looks like right now. Each part
 * (certificate + keystore, config, service, host, agent) is collected on its own and fails on its
 * own, as an `error` inside that part: a keystore with the wrong password still reports config and
 * service. No secret (store password, instance or proxy credentials, key material) is ever included.
 */

export type AgentStatusInit = MessageInitShape<typeof AgentStatusSchema>;
type CertificateStatusInit = MessageInitShape<typeof CertificateStatusSchema>;
type CertificateSummaryInit = MessageInitShape<typeof CertificateSummarySchema>;
type KeystoreStatusInit = MessageInitShape<typeof KeystoreStatusSchema>;
type ConfigStatusInit = MessageInitShape<typeof ConfigStatusSchema>;
type ServiceStatusInit = MessageInitShape<typeof ServiceStatusSchema>;
type AgentInfoInit = MessageInitShape<typeof AgentInfoSchema>;
type OperationResultInit = MessageInitShape<typeof OperationResultSchema>;
export type ErrorInfoInit = MessageInitShape<typeof ErrorInfoSchema>;

/** A service manager may also say since when the service has been active (ISO-8601). */
export type StatusServiceManager = ServiceManager & { since?: () => Promise<string | undefined> };

export interface StatusSources {
  cfg: AgentConfig;
  paths: MidPaths;
  /** The keystore password, or how to get it (a failure then shows as a keystore error only). */
  storepass: string | (() => Promise<string>);
  service: StatusServiceManager;
  engine: Pick<RenewalEngine, 'state'>;
  startedAt: Date;
  /** Host facts; defaults to hostInfo(paths.home) (systeminformation, cached 60 s). */
  hostInfo?: () => Promise<HostInfoInit>;
  /** The clock (tests). */
  now?: () => Date;
}

/** How long one service status query may take before the part reports SERVICE_FAILED. */
const SERVICE_QUERY_MAX_MS = 30_000;

export async function collectStatus(sources: StatusSources): Promise<AgentStatusInit> {
  const now = (sources.now ?? (() => new Date()))();
  const secrets = typeof sources.storepass === 'string' ? [sources.storepass] : [];
  // The keystore part needs the auth mode: a self-signed pair is normal under basic auth only.
  const summary = readConfigXml(sources.paths.configXml).then(summarizeMidConfig);
  const authMode = summary.then((s) => s.authMode, () => undefined);
  const [keystorePart, config, service, host, agent] = await Promise.all([
    guard(async () => collectKeystore(sources, now, await authMode), 'KEYSTORE_UNREADABLE', secrets, (error) => ({
      keystore: { path: sources.paths.keystore, alias: sources.cfg.mid.alias, error },
      certificate: { present: false },
    })),
    guard(async () => configStatus(sources.paths.configXml, await summary), 'MID_CONFIG_INVALID', secrets, (error) => ({ path: sources.paths.configXml, error })),
    guard(() => collectService(sources), 'SERVICE_FAILED', secrets, (error) => ({ manager: sources.service.manager, unit: sources.service.unit, error })),
    guard(() => (sources.hostInfo ?? (() => hostInfo(sources.paths.home)))(), 'INTERNAL', secrets, () => ({})),
    // The journal unreadable: the rest of the agent part is still known.
    guard(() => collectAgent(sources, now), 'INTERNAL', secrets, () => ({ version: VERSION, uptimeSeconds: uptime(sources.startedAt, now), renewalState: 'unknown' })),
  ]);
  return {
    midName: config.midName ?? '',
    certificate: keystorePart.certificate,
    keystore: keystorePart.keystore,
    config,
    service,
    host,
    agent,
    observedAt: now.toISOString(),
  };
}

/**
 * The JSON the CLI prints for `status --json`: protobuf JSON of AgentStatus with every scalar
 * emitted (camelCase names), the same text a gRPC client gets with toJson. See docs/agent-status.md.
 */
export function statusToJson(status: AgentStatusInit): JsonObject {
  return toJson(AgentStatusSchema, create(AgentStatusSchema, status), { alwaysEmitImplicit: true }) as JsonObject;
}

// ---- keystore + certificate ----

export interface InspectedKeystore {
  type: KeystoreType;
  modifiedAt: string;
  /** The entry under the client alias (compared case-insensitively, as Java does). */
  entry: KeystoreEntry | undefined;
}

/**
 * Reads the MID keystore with the store password and finds the client alias. Throws a
 * MidcertError: KEYSTORE_UNREADABLE (missing, unreadable, not a regular file: a FIFO, a device
 * such as /dev/zero, a socket, a directory), KEYSTORE_PASSWORD, KEYSTORE_MALFORMED, INPUT_TOO_LARGE.
 * `partial.modifiedAt` is set as soon as the file is found, even if reading fails.
 */
export async function inspectKeystore(path: string, storepass: string, alias: string, partial: { modifiedAt?: string } = {}): Promise<InspectedKeystore> {
  const bytes = await readBoundedFile(path, {
    what: 'the keystore', maxBytes: LIMITS.keystoreBytes, unreadableCode: 'KEYSTORE_UNREADABLE',
    onStat: (info) => { partial.modifiedAt = info.mtime.toISOString(); },
  });
  const store = readKeystore(bytes, storepass);
  return { type: store.type, modifiedAt: partial.modifiedAt ?? '', entry: findEntry(store, alias) };
}

async function collectKeystore(sources: StatusSources, now: Date, authMode?: AuthMode): Promise<{ keystore: KeystoreStatusInit; certificate: CertificateStatusInit }> {
  const alias = sources.cfg.mid.alias;
  const keystore: KeystoreStatusInit = { path: sources.paths.keystore, alias };
  const partial: { modifiedAt?: string } = {};
  let storepass: string | undefined;
  try {
    storepass = typeof sources.storepass === 'string' ? sources.storepass : await sources.storepass();
    const inspected = await inspectKeystore(sources.paths.keystore, storepass, alias, partial);
    const entry = inspected.entry;
    Object.assign(keystore, {
      type: inspected.type, modifiedAt: inspected.modifiedAt, aliasPresent: entry !== undefined,
      ...(entry ? { alias: entry.alias, entryKind: entry.kind } : {}),
    });
    return { keystore, certificate: certificateStatus(entry, now, authMode) };
  } catch (err) {
    return {
      keystore: { ...keystore, type: '', modifiedAt: partial.modifiedAt ?? '', error: errorInfo(err, 'KEYSTORE_UNREADABLE', storepass ? [storepass] : []) },
      certificate: { present: false },
    };
  }
}

function certificateStatus(entry: KeystoreEntry | undefined, now: Date, authMode?: AuthMode): CertificateStatusInit {
  const leaf = entry?.kind === 'PrivateKeyEntry' ? entry.chain[0] : undefined;
  if (!entry || !leaf) return { present: false };
  const own = authMode !== 'mutual' ? selfSignedPairFinding(entry.alias, leaf) : undefined;
  return {
    present: true,
    leaf: certificateSummary(leaf),
    chain: entry.chain.map(certificateSummary),
    daysLeft: daysLeft(leaf, now),
    selfSigned: midSelfSigned(leaf).selfSigned,
    // The MID's own self-signed pair under basic auth: one info finding, not the lint errors a
    // client certificate for mutual auth would get (LEAF_SELF_SIGNED, EKU_CLIENT_AUTH_MISSING, …).
    findings: own ? [own] : lintMaterial(entry.chain, entry.privateKey, { now }).map((f) => ({ code: f.code, severity: f.severity, message: f.message, fix: f.fix })),
  };
}

/** The info finding code for the MID's own self-signed key pair (docs/agent-status.md). */
export const MID_SELF_SIGNED = 'MID_SELF_SIGNED';

/**
 * Whether the client alias holds the MID's own self-signed pair: issuer = subject (self-signed);
 * `vendorGenerated` when the subject also holds DC=service-now, the auto-generated pair public
 * automation detects (docs/vendor-facts.md §6: "When the MID Server is created, it generates a
 * keypair" — SND:…/t_RekeyAMIDServer.md; self-signed pairs are for "non-MTLS use cases" —
 * SND:…/mid-unified-keystore.md, §4).
 */
export function midSelfSigned(leaf: Certificate): { selfSigned: boolean; vendorGenerated: boolean } {
  const selfSigned = leaf.selfSigned === true;
  return { selfSigned, vendorGenerated: selfSigned && /(^|,)\s*DC=service-now\s*(,|$)/i.test(leaf.subjectText) };
}

/** Under basic auth (or before config.xml says): the normal state before conversion, as an info finding. */
export function selfSignedPairFinding(alias: string, leaf: Certificate): { code: string; severity: string; message: string; fix: string } | undefined {
  const own = midSelfSigned(leaf);
  if (!own.selfSigned) return undefined;
  return {
    code: MID_SELF_SIGNED, severity: 'info',
    message: `alias "${alias}" holds ${own.vendorGenerated ? "the MID's own self-signed key pair" : 'a self-signed key pair'} ("${leaf.subjectText}"), selfSigned: true: the normal state of a basic-auth MID before conversion to mutual auth`,
    fix: 'nothing to do under basic auth; to convert, have the controller install a CA-issued client certificate: midcert convert --agent <name>; self-signed certificates are not supported for mutual auth',
  };
}

export function certificateSummary(cert: Certificate): CertificateSummaryInit {
  return {
    subject: cert.subjectText, issuer: cert.issuerText, serial: cert.serial,
    notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString(), sha256: cert.sha256,
  };
}

// ---- config.xml ----

function configStatus(path: string, summary: MidConfigSummary): ConfigStatusInit {
  return {
    path,
    instanceUrl: summary.instanceUrl,
    midName: summary.midName,
    proxy: { enabled: summary.proxy.enabled, host: summary.proxy.host, port: summary.proxy.port, credentialsPresent: summary.proxy.credentialsPresent },
    basicCredentialsPresent: summary.basicCredentialsPresent,
    authMode: summary.authMode,
    placeholders: summary.placeholders,
    keys: configKeys(summary),
    conflicts: summary.conflicts.map((c) => ({ setting: c.setting, keys: c.keys, severity: c.severity, message: c.message })),
  };
}

/** Which config.xml name is in force for each aliased setting, in one list (no values). */
function configKeys(summary: MidConfigSummary): { setting: string; key: string; set: boolean; present: string[] }[] {
  const { username, password, proxy, upgradeProxy } = summary.keys;
  const entries: [string, SettingKey][] = [
    ['username', username], ['password', password], ['useProxy', proxy.useProxy],
    ['upgradeProxyHost', upgradeProxy.host], ['upgradeProxyPort', upgradeProxy.port],
  ];
  return entries.map(([setting, k]) => ({ setting, key: k.key, set: k.set, present: k.present }));
}

// ---- service ----

async function collectService(sources: StatusSources): Promise<ServiceStatusInit> {
  const service = sources.service;
  const limitMs = Math.min(sources.cfg.service.timeoutSeconds * 1000, SERVICE_QUERY_MAX_MS);
  const active = await withTimeout(service.isActive(), limitMs, `the status query of ${service.unit} did not answer within ${Math.round(limitMs / 1000)} s`);
  const since = active ? await serviceSince(service).catch(() => undefined) : undefined;
  return { manager: service.manager, unit: service.unit, active, since: since ?? '' };
}

/** When the service became active: the manager's own answer, else systemd's; undefined if unknown. */
async function serviceSince(service: StatusServiceManager): Promise<string | undefined> {
  if (service.since) return service.since();
  if (service.manager !== 'systemd') return undefined;
  const result = await execProgram('systemctl', ['show', '--property=ActiveEnterTimestamp', '--timestamp=unix', '--value', service.unit], { timeoutMs: 5_000 });
  const match = /^@(\d{1,12})\s*$/.exec(result.stdout.trim());
  return result.code === 0 && match ? new Date(Number(match[1]) * 1000).toISOString() : undefined;
}

// ---- agent ----

async function collectAgent(sources: StatusSources, now: Date): Promise<AgentInfoInit> {
  const state = await sources.engine.state();
  const info: AgentInfoInit = {
    version: VERSION,
    uptimeSeconds: uptime(sources.startedAt, now),
    renewalState: state.state,
    renewalId: state.renewalId,
  };
  if (state.lastResult) info.lastResult = operationResult(state.lastResult);
  return info;
}

/** The journal's LastResult as the OperationResult message (the same fields, camelCase). */
export function operationResult(result: LastResult): OperationResultInit {
  return {
    ok: result.ok,
    renewalId: result.renewalId,
    failedStep: result.failedStep,
    ...(result.error ? { error: { code: result.error.code, message: result.error.message, detail: result.error.detail } } : {}),
    rolledBack: result.rolledBack,
    previousSha256: result.previousSha256,
    currentSha256: result.currentSha256,
    finishedAt: result.finishedAt,
    ...(result.warnings?.length ? { warnings: [...result.warnings] } : {}),
  };
}

function uptime(startedAt: Date, now: Date): number {
  return Math.max(0, Math.floor((now.getTime() - startedAt.getTime()) / 1000));
}

// ---- helpers ----

/** An error as ErrorInfo {code, message}: our codes pass through, anything else gets `fallback`. */
export function errorInfo(err: unknown, fallback: ErrorCode, secrets: readonly string[] = []): ErrorInfoInit {
  const code = isMidcertError(err) ? err.code : fallback;
  const raw = err instanceof Error ? err.message : String(err);
  return { code, message: redact(firstLine(raw), secrets) };
}

/** Replaces every occurrence of a known secret (of a length worth matching) with "***". */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Runs one part; a throw becomes that part's fallback built from the error (never a rejection). */
async function guard<T>(run: () => Promise<T>, code: ErrorCode, secrets: readonly string[], fallback: (error: ErrorInfoInit) => T): Promise<T> {
  try {
    return await run();
  } catch (err) {
    return fallback(errorInfo(err, code, secrets));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MidcertError('SERVICE_FAILED', message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
