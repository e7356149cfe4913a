import { constants } from 'node:fs';
import { access, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { create, toJson, type JsonObject, type MessageInitShape } from '@bufbuild/protobuf';
import { readBoundedText } from '../common/bounded-read.js';
import { MidcertError, isMidcertError, type ErrorCode } from '../common/errors.js';
import { LIMITS } from '../common/limits.js';
import { lintMaterial } from '../pki/lint.js';
import { PreflightReportSchema, type PreflightCheckSchema } from '../proto/gen/midcert/v1/agent_pb.js';
import { detectInterception } from './preflight/interception.js';
import { probeInstance, type ProbeProxy, type ProbeResult } from './preflight/instance-probe.js';
import { PLACEHOLDERS, parameterValue, readConfigXml, summarizeMidConfig, type ConfigParameter, type MidConfigSummary } from './mid-config.js';
import { MID_SELF_SIGNED, inspectKeystore, redact, selfSignedPairFinding, type InspectedKeystore, type StatusSources } from './status.js';

/**
 * RunPreflight and `midcert-agent preflight`: is this host ready for (or still fit for) a MID with
 * mutual TLS? Host-side checks only; the controller checks the instance side (plugin, CA chain,
 * service user). Every check ends as a finding — none throws, each is bounded in time — and the
 * report is ok when no check of severity "error" failed. Check names, codes and messages are in
 * docs/agent-status.md.
 */

export type PreflightReportInit = MessageInitShape<typeof PreflightReportSchema>;
export type PreflightCheckInit = MessageInitShape<typeof PreflightCheckSchema>;
export type CheckSeverity = 'error' | 'warning' | 'info';

export type PreflightSources = Pick<StatusSources, 'cfg' | 'paths' | 'storepass' | 'service'>;

export interface PreflightOptions {
  /** The clock (tests); used for certificate validity and the clock check. */
  now?: () => Date;
  /** Overrides cfg.preflight.timeoutSeconds. */
  timeoutMs?: number;
  /** Overrides cfg.preflight.clockSkewSeconds. */
  clockSkewSeconds?: number;
}

/** The check names, in report order. */
export const PREFLIGHT_CHECKS = ['config', 'keystore', 'state-dir', 'service', 'instance-reachable', 'clock', 'adcv2', 'tls-interception'] as const;
export type PreflightCheckName = (typeof PREFLIGHT_CHECKS)[number];

/** Code of a check that passed. */
export const OK = 'OK';

interface Check {
  name: PreflightCheckName;
  ok: boolean;
  severity: CheckSeverity;
  code: string;
  message: string;
}

const pass = (name: PreflightCheckName, message: string, code = OK): Check => ({ name, ok: true, severity: 'info', code, message });
const fail = (name: PreflightCheckName, severity: Exclude<CheckSeverity, 'info'>, code: string, message: string): Check => ({ name, ok: false, severity, code, message });
const skipped = (name: PreflightCheckName, why: string): Check => fail(name, 'warning', 'CHECK_SKIPPED', `not checked: ${why}`);

export async function runPreflight(sources: PreflightSources, options: PreflightOptions = {}): Promise<PreflightReportInit> {
  const now = options.now ?? (() => new Date());
  const timeoutMs = options.timeoutMs ?? sources.cfg.preflight.timeoutSeconds * 1000;
  const skewSeconds = options.clockSkewSeconds ?? sources.cfg.preflight.clockSkewSeconds;
  const secrets: string[] = typeof sources.storepass === 'string' ? [sources.storepass] : [];

  const config = await bounded('config', () => readMidConfig(sources.paths.configXml), timeoutMs, secrets);
  const configCheck: Check = 'name' in config ? config : configFindings(config);
  const summary = 'name' in config ? undefined : config.summary;
  if (!('name' in config)) secrets.push(...configSecrets(config.params));

  const [keystore, stateDir, service, instance] = await Promise.all([
    bounded('keystore', () => keystoreCheck(sources, summary, now()), timeoutMs, secrets),
    bounded('state-dir', () => stateDirCheck(sources.cfg.stateDir), timeoutMs, secrets),
    bounded('service', () => serviceCheck(sources), timeoutMs, secrets),
    instanceChecks(sources, 'name' in config ? undefined : config, { timeoutMs, skewSeconds }, secrets),
  ]);
  const checks = [configCheck, keystore, stateDir, service, ...instance].map((c) => ({ ...c, message: redact(c.message, secrets) }));
  return { ok: !checks.some((c) => !c.ok && c.severity === 'error'), checks };
}

/** The JSON the CLI prints for `preflight --json`: protobuf JSON with every scalar emitted. */
export function preflightToJson(report: PreflightReportInit): JsonObject {
  return toJson(PreflightReportSchema, create(PreflightReportSchema, report), { alwaysEmitImplicit: true }) as JsonObject;
}

// ---- config.xml ----

interface MidConfig {
  params: ConfigParameter[];
  summary: MidConfigSummary;
}

async function readMidConfig(path: string): Promise<MidConfig> {
  const params = await readConfigXml(path);
  return { params, summary: summarizeMidConfig(params) };
}

/** Parameters whose vendor placeholder means the MID cannot run (proxy ones only with the proxy on). */
const REQUIRED_FILLED = ['url', 'name', 'mid.instance.username', 'mid.instance.password'];
const PROXY_PARAMETERS = ['mid.proxy.host', 'mid.proxy.port', 'mid.proxy.username', 'mid.proxy.password'];

function configFindings({ params, summary }: MidConfig): Check {
  const problems: string[] = [];
  // Alias pairs set to different values (docs/vendor-facts.md §9): never guess which one the MID uses.
  const conflictErrors = summary.conflicts.filter((c) => c.severity === 'error');
  if (conflictErrors.length > 0) return fail('config', 'error', 'CONFIG_ALIAS_CONFLICT', conflictErrors.map((c) => c.message).join('; '));
  // The credential names in force may be the glide.glidesoap.* aliases.
  const required = [...REQUIRED_FILLED, ...summary.keys.username.present, ...summary.keys.password.present];
  const placeholders = summary.placeholders.filter((n) => required.includes(n) || (summary.proxy.enabled && PROXY_PARAMETERS.includes(n)));
  if (placeholders.length > 0) problems.push(`vendor placeholders in ${placeholders.join(', ')}`);
  const url = parameterValue(params, 'url') ?? '';
  if (!summary.instanceUrl && !placeholders.includes('url')) problems.push('url is empty');
  if (!summary.midName && !placeholders.includes('name')) problems.push('name is empty');
  if (summary.instanceUrl && !/^https:\/\//i.test(url)) problems.push(`url ${url} is not an https:// URL`);
  if (summary.proxy.enabled && !placeholders.some((n) => n === 'mid.proxy.host' || n === 'mid.proxy.port')) {
    const useProxyKey = summary.keys.proxy.useProxy.key || 'mid.proxy.use_proxy';
    if (!summary.proxy.host) problems.push(`${useProxyKey} is true but mid.proxy.host is empty`);
    if (!(summary.proxy.port > 0 && summary.proxy.port < 65_536)) problems.push(`${useProxyKey} is true but mid.proxy.port is not a port number`);
  }
  if (problems.length > 0) return fail('config', 'error', 'MID_CONFIG_INCOMPLETE', `config.xml: ${problems.join('; ')}`);
  const conflictWarnings = summary.conflicts.filter((c) => c.severity === 'warning');
  if (conflictWarnings.length > 0) return fail('config', 'warning', 'CONFIG_ALIAS_CONFLICT', conflictWarnings.map((c) => c.message).join('; '));
  const where = `MID "${summary.midName}" for ${summary.instanceUrl}${summary.proxy.enabled ? ` through the proxy ${summary.proxy.host}:${summary.proxy.port}` : ''}`;
  if (summary.basicCredentialsPresent) {
    return pass('config', `config.xml names ${where}; basic auth; conversion possible with the controller: midcert convert --agent <name>`, 'BASIC_AUTH');
  }
  return pass('config', `config.xml names ${where}; mutual auth`);
}

// ---- keystore ----

async function keystoreCheck(sources: PreflightSources, config: MidConfigSummary | undefined, now: Date): Promise<Check> {
  const storepass = typeof sources.storepass === 'string' ? sources.storepass : await sources.storepass();
  const alias = sources.cfg.mid.alias;
  // A basic-auth MID needs a client certificate only once it converts to mutual auth.
  const basic = config?.authMode === 'basic';
  const noCertificate = (code: ErrorCode, what: string): Check => (basic
    ? fail('keystore', 'warning', code, `${what}; a client certificate is needed before converting to mutual auth`)
    : fail('keystore', 'error', code, `${what}; the MID has no client certificate`));
  let inspected: InspectedKeystore;
  try {
    inspected = await inspectKeystore(sources.paths.keystore, storepass, alias);
  } catch (err) {
    if (basic && isMidcertError(err) && err.code === 'KEYSTORE_UNREADABLE' && /ENOENT/.test(err.message)) return noCertificate(err.code, err.message);
    throw err;
  }
  const { entry, type } = inspected;
  const leaf = entry?.kind === 'PrivateKeyEntry' ? entry.chain[0] : undefined;
  if (!entry || !leaf) {
    return noCertificate('KEYSTORE_ALIAS_MISSING', entry ? `alias "${entry.alias}" is a ${entry.kind}, not a PrivateKeyEntry` : `the ${type} keystore has no alias "${alias}"`);
  }
  // A fresh basic-auth MID holds its own self-signed pair (docs/vendor-facts.md §6): normal before
  // conversion, an info finding. Under mutual auth it stays an error (LEAF_SELF_SIGNED below):
  // self-signed certificates are for "non-MTLS use cases" (SND:…/mid-unified-keystore.md, §4).
  const own = config && config.authMode !== 'mutual' ? selfSignedPairFinding(entry.alias, leaf) : undefined;
  if (own) return pass('keystore', own.message, MID_SELF_SIGNED);
  const findings = lintMaterial(entry.chain, entry.privateKey, { now });
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length > 0) {
    const selfSignedNote = errors.some((f) => f.code === 'LEAF_SELF_SIGNED') ? ' (the MID is on mutual auth, which does not support self-signed certificates: install a CA-issued client certificate)' : '';
    return fail('keystore', 'error', errors[0]!.code, `alias "${entry.alias}": ${errors.map((f) => `[${f.code}] ${f.message}`).join('; ')}${selfSignedNote}`);
  }
  const warnings = findings.filter((f) => f.severity === 'warning').sort((a, b) => Number(b.code === 'CERT_EXPIRING') - Number(a.code === 'CERT_EXPIRING'));
  if (warnings.length > 0) {
    return fail('keystore', 'warning', warnings[0]!.code, `alias "${entry.alias}": ${warnings.map((f) => `[${f.code}] ${f.message}`).join('; ')}`);
  }
  const days = Math.floor((leaf.notAfter.getTime() - now.getTime()) / 86_400_000);
  return pass('keystore', `alias "${entry.alias}" holds "${leaf.subjectText}" issued by "${leaf.issuerText}", valid until ${leaf.notAfter.toISOString()} (${days} days left)`);
}

// ---- state dir ----

async function stateDirCheck(dir: string): Promise<Check> {
  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (!info) {
    const parent = await nearestExisting(dirname(dir));
    const writable = await access(parent, constants.W_OK | constants.X_OK).then(() => true, () => false);
    return writable
      ? pass('state-dir', `${dir} does not exist yet; the agent creates it (mode 0700) under ${parent}`)
      : fail('state-dir', 'error', 'STATE_DIR_UNUSABLE', `${dir} does not exist and ${parent} is not writable by this user`);
  }
  if (!info.isDirectory()) return fail('state-dir', 'error', 'STATE_DIR_UNUSABLE', `${dir} is not a directory`);
  const probe = join(dir, `.preflight-${process.pid}-${Date.now()}`);
  try {
    await writeFile(probe, '', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    return fail('state-dir', 'error', 'STATE_DIR_UNUSABLE', `${dir} is not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
  // chmod is a no-op on Windows (modes read 0666/0777): there the ACL is what protects the keys.
  if (process.platform === 'win32') return (await import('./windows/preflight-acl.js')).stateDirAclCheck(dir);
  const mode = info.mode & 0o777;
  if ((mode & 0o007) !== 0) {
    return fail('state-dir', 'error', 'STATE_DIR_UNUSABLE', `${dir} has mode ${octal(mode)}: other users can ${mode & 0o002 ? 'write' : 'read'} it (it holds private keys until they are installed); chmod 700 ${dir}`);
  }
  return pass('state-dir', `${dir} is writable, mode ${octal(mode)}`);
}

async function nearestExisting(dir: string): Promise<string> {
  let at = dir;
  while (!(await stat(at).then(() => true, () => false))) {
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  return at;
}

const octal = (mode: number): string => `0${mode.toString(8).padStart(3, '0')}`;

// ---- service ----

async function serviceCheck(sources: PreflightSources): Promise<Check> {
  const { service } = sources;
  // The `command` manager's unit is already "(command)": name it once, not "(command) (command)".
  const label = service.unit === `(${service.manager})` ? service.unit : `${service.unit} (${service.manager})`;
  return (await service.isActive())
    ? pass('service', `the MID service ${label} is active`)
    : fail('service', 'error', 'SERVICE_INACTIVE', `the MID service ${label} is not active`);
}

// ---- the instance: reachable, clock, ADCv2, TLS interception ----

async function instanceChecks(sources: PreflightSources, config: MidConfig | undefined, limits: { timeoutMs: number; skewSeconds: number }, secrets: string[]): Promise<Check[]> {
  const skipAll = (why: string): Check[] => (['instance-reachable', 'clock', 'adcv2', 'tls-interception'] as const).map((n) => skipped(n, why));
  if (!config) return skipAll('config.xml cannot be read');
  const url = parseInstanceUrl(config.summary.instanceUrl);
  if (!url) return skipAll('config.xml has no usable https:// instance URL');
  let ca: string[];
  try {
    ca = await trustedCas(sources.cfg.preflight.instanceCaFile);
  } catch (err) {
    return [fail('instance-reachable', 'error', 'CONFIG_UNREADABLE', (err as Error).message), ...skipAll('the trusted CAs cannot be read').slice(1)];
  }
  const proxy = config.summary.proxy.enabled ? proxyOf(config) : undefined;
  if (proxy && !(proxy.host && proxy.port > 0 && proxy.port < 65_536)) return skipAll('mid.proxy.use_proxy is true but the proxy host or port is not set');
  let probe: ProbeResult;
  try {
    probe = await probeInstance({ url, ca, timeoutMs: limits.timeoutMs, ...(proxy ? { proxy } : {}) });
  } catch (err) {
    return [fail('instance-reachable', 'error', 'INTERNAL', redact((err as Error).message, secrets)), ...skipAll('the probe failed').slice(1)];
  }
  return [reachableCheck(url, probe, proxy), clockCheck(probe, limits.skewSeconds), adcv2Check(probe), interceptionCheck(probe)];
}

function parseInstanceUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

async function trustedCas(instanceCaFile: string | undefined): Promise<string[]> {
  if (!instanceCaFile) return [...rootCertificates];
  const pem = await readBoundedText(instanceCaFile, { what: 'preflight.instanceCaFile', maxBytes: LIMITS.pemBytes, unreadableCode: 'CONFIG_UNREADABLE' });
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new MidcertError('CONFIG_UNREADABLE', `preflight.instanceCaFile ${instanceCaFile} holds no PEM certificate`);
  return [...rootCertificates, pem];
}

/** The proxy from config.xml; credentials only when they are there in clear (the MID encrypts them). */
function proxyOf({ params, summary }: MidConfig): ProbeProxy & { encryptedCredentials: boolean } {
  const username = parameterValue(params, 'mid.proxy.username') ?? '';
  const password = parameterValue(params, 'mid.proxy.password') ?? '';
  const usable = (v: string, placeholder: string): boolean => v !== '' && v !== placeholder && !v.startsWith('encrypted:');
  const encryptedCredentials = username.startsWith('encrypted:') || password.startsWith('encrypted:');
  const withCredentials = usable(username, PLACEHOLDERS.proxyUsername) && usable(password, PLACEHOLDERS.proxyPassword);
  return { host: summary.proxy.host, port: summary.proxy.port, encryptedCredentials, ...(withCredentials ? { username, password } : {}) };
}

function configSecrets(params: ConfigParameter[]): string[] {
  return ['mid.proxy.password', 'mid.instance.password', 'glide.glidesoap.password'].map((n) => parameterValue(params, n) ?? '').filter((v) => v.length >= 4);
}

function reachableCheck(url: URL, probe: ProbeResult, proxy: (ProbeProxy & { encryptedCredentials: boolean }) | undefined): Check {
  const route = proxy
    ? ` through the proxy ${proxy.host}:${proxy.port} (${proxy.username ? 'with' : 'without'} proxy credentials${proxy.encryptedCredentials ? '; the ones in config.xml are encrypted by the MID and cannot be used here' : ''})`
    : '';
  if (!probe.reached) return fail('instance-reachable', 'error', probe.code, probe.message + (probe.code === 'PROXY_REFUSED' && proxy?.encryptedCredentials ? '; the proxy credentials in config.xml are encrypted by the MID and cannot be used here' : ''));
  if (probe.trustError) {
    return fail('instance-reachable', 'error', 'INSTANCE_TLS_UNTRUSTED',
      `${url.origin} answered HTTP ${probe.status}${route}, but its certificate is not trusted: ${probe.trustError}; issuer "${probe.presented[0]?.issuer ?? 'unknown'}"` +
      (probe.viaProxy
        ? ' (through a proxy this usually means the proxy intercepts TLS with its own CA: see tls-interception; for an instance on a private CA set preflight.instanceCaFile)'
        : ' (a private CA: set preflight.instanceCaFile; the MID needs it in its own trust store too)'));
  }
  return pass('instance-reachable', `${url.origin} answered HTTP ${probe.status}${route} with a trusted certificate`);
}

function clockCheck(probe: ProbeResult, skewSeconds: number): Check {
  if (!probe.reached) return skipped('clock', 'the instance could not be reached');
  const header = probe.headers.date;
  const instanceTime = header ? Date.parse(header) : Number.NaN;
  if (Number.isNaN(instanceTime)) return skipped('clock', `the instance sent no usable Date header${header ? ` ("${header.slice(0, 60)}")` : ''}`);
  // The Date header has whole seconds and is written before the response travels: allow for both.
  const skew = Math.round((probe.receivedAt.getTime() - instanceTime) / 1000);
  const text = `this host's clock is ${Math.abs(skew)} s ${skew >= 0 ? 'ahead of' : 'behind'} the instance (local ${probe.receivedAt.toISOString()}, instance ${new Date(instanceTime).toISOString()})`;
  if (Math.abs(skew) > skewSeconds) return fail('clock', 'error', 'CLOCK_SKEW', `${text}; the limit is ${skewSeconds} s: fix time sync (chrony/ntpd, or timedatectl)`);
  return pass('clock', text);
}

function adcv2Check(probe: ProbeResult): Check {
  if (!probe.reached) return skipped('adcv2', 'the instance could not be reached');
  const server = probe.headers.server;
  if (typeof server === 'string' && server.trim().toLowerCase() === 'snow_adc') return pass('adcv2', 'the instance answers with Server: snow_adc (ADCv2)');
  return fail('adcv2', 'warning', 'INSTANCE_NOT_ADCV2',
    `the instance answered with ${server ? `Server: ${String(server).slice(0, 80)}` : 'no Server header'}, not snow_adc: it may not be on ADCv2, which mutual TLS needs (or a proxy rewrote the header)`);
}

function interceptionCheck(probe: ProbeResult): Check {
  if (probe.presented.length === 0) return skipped('tls-interception', 'no certificate was presented (the TLS handshake did not complete)');
  const issuer = probe.presented[0]?.issuer ?? '';
  const hit = detectInterception(probe.presented);
  if (hit) {
    return fail('tls-interception', 'error', 'TLS_INTERCEPTED',
      `a TLS-intercepting proxy strips the client certificate: the instance certificate is issued by "${issuer}" (${hit.vendor}${hit.name === issuer ? '' : `, named in "${hit.name}"`}); exempt the instance host from TLS inspection`);
  }
  // Through a proxy, a chain this host cannot verify is what an inspecting proxy's own CA looks like
  // (the instance's real certificate chains to a public root, or to preflight.instanceCaFile).
  if (probe.viaProxy && probe.trustError) {
    return fail('tls-interception', 'error', 'TLS_INTERCEPTED',
      `through the proxy the instance certificate is issued by "${issuer}", which this host does not trust (${probe.trustError}): the proxy most likely intercepts TLS with its own CA and would strip the MID's client certificate; exempt the instance host from TLS inspection (or, if the instance really uses that CA, set preflight.instanceCaFile)`);
  }
  return pass('tls-interception', `the instance certificate is issued by "${issuer}", not a known TLS-intercepting proxy`);
}

// ---- helpers ----

/** Runs one check within the time limit; a throw or a timeout becomes an error finding. */
async function bounded<T extends Check | MidConfig>(name: PreflightCheckName, run: () => Promise<T>, timeoutMs: number, secrets: readonly string[]): Promise<T | Check> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Check>((resolve) => {
    timer = setTimeout(() => resolve(fail(name, 'error', codeFor(name), `${name}: no answer within ${Math.round(timeoutMs / 100) / 10} s`)), timeoutMs);
  });
  try {
    return await Promise.race([run(), timeout]);
  } catch (err) {
    const code: ErrorCode = isMidcertError(err) ? err.code : codeFor(name);
    const message = err instanceof Error ? (err.message.split('\n', 1)[0] ?? '') : String(err);
    return fail(name, 'error', code, redact(message, secrets));
  } finally {
    clearTimeout(timer);
  }
}

function codeFor(name: PreflightCheckName): ErrorCode {
  switch (name) {
    case 'config': return 'MID_CONFIG_INVALID';
    case 'keystore': return 'KEYSTORE_UNREADABLE';
    case 'state-dir': return 'STATE_DIR_UNUSABLE';
    case 'service': return 'SERVICE_FAILED';
    default: return 'INTERNAL';
  }
}
