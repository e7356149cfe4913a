import { isMidcertError } from '../../common/errors.js';
import { activeCaChain } from './ca-chain.js';
import { findMidUser, type MidUserLookup } from './mid-users.js';
import type { InstanceClient, TableRecord } from './rest.js';

/**
 * The instance side of "is mutual TLS for MIDs going to work here" (DESIGN §4 prerequisites).
 * Every check ends as a finding; none throws. Host-side checks are the agent's (agent/preflight.ts)
 * and use the same finding shape: a passed check is severity "info" with code "OK".
 */
export const INSTANCE_CHECKS = ['adcv2', 'supports-tls', 'mutual-auth-plugin', 'tls-sni', 'ca-chain', 'mid-users', 'credentials'] as const;
export type InstanceCheckName = (typeof INSTANCE_CHECKS)[number];
export type CheckSeverity = 'error' | 'warning' | 'info';

export interface InstanceCheck {
  name: InstanceCheckName;
  ok: boolean;
  severity: CheckSeverity;
  code: string;
  message: string;
}

export interface InstancePreflightOptions {
  /** MIDs whose service users to check; the mid-users check is left out when none are given. */
  midNames?: readonly string[];
  midUsers?: MidUserLookup;
}

const PLUGIN = 'com.glide.auth.mutual';
const SNI_PROPERTY = 'glide.outbound.tls_sni.enabled';

const pass = (name: InstanceCheckName, message: string): InstanceCheck => ({ name, ok: true, severity: 'info', code: 'OK', message });
const fail = (name: InstanceCheckName, severity: Exclude<CheckSeverity, 'info'>, code: string, message: string): InstanceCheck => ({ name, ok: false, severity, code, message });
const skipped = (name: InstanceCheckName, why: string): InstanceCheck => fail(name, 'warning', 'CHECK_SKIPPED', `not checked: ${why}`);

export async function preflightInstance(client: InstanceClient, options: InstancePreflightOptions = {}): Promise<InstanceCheck[]> {
  const [probe, sni] = await Promise.all([
    settle(client.request('GET', '/adcv2/supports_tls', { authenticate: false, accept: 'text/plain, */*', anyStatus: true })),
    settle(client.tableGet('sys_properties', { query: `name=${SNI_PROPERTY}`, fields: ['name', 'value'], limit: 1 })),
  ]);
  const checks = new Map<InstanceCheckName, InstanceCheck>();

  if ('error' in probe) {
    checks.set('adcv2', failed('adcv2', probe.error));
    checks.set('supports-tls', failed('supports-tls', probe.error));
  } else {
    const server = String(probe.value.headers['server'] ?? '');
    checks.set('adcv2', server.toLowerCase() === 'snow_adc'
      ? pass('adcv2', 'the instance answers with Server: snow_adc (ADCv2)')
      : fail('adcv2', 'error', 'INSTANCE_NOT_ADCV2', `the instance answers with Server: ${server || '(none)'}, not snow_adc; mutual TLS needs ADCv2`));
    checks.set('supports-tls', supportsTls(probe.value.status, probe.value.body.toString('utf8', 0, 200)));
  }

  if ('error' in sni) {
    checks.set('credentials', failed('credentials', sni.error));
    const why = 'the instance did not accept the configured credentials for reading';
    for (const name of ['mutual-auth-plugin', 'tls-sni', 'ca-chain', 'mid-users'] as const) checks.set(name, skipped(name, why));
  } else {
    checks.set('credentials', pass('credentials', 'the configured credentials can read the instance'));
    checks.set('tls-sni', tlsSni(sni.value[0]));
    const [plugin, chain, users] = await Promise.all([
      guard('mutual-auth-plugin', () => mutualAuthPlugin(client)),
      guard('ca-chain', () => caChain(client)),
      guard('mid-users', () => midUsers(client, options)),
    ]);
    checks.set('mutual-auth-plugin', plugin);
    checks.set('ca-chain', chain);
    checks.set('mid-users', users);
  }
  if (!options.midNames?.length) checks.delete('mid-users');
  return INSTANCE_CHECKS.flatMap((name) => checks.get(name) ?? []);
}

function supportsTls(status: number, body: string): InstanceCheck {
  const word = body.trim().toLowerCase();
  if (status === 200 && word === 'true') return pass('supports-tls', '/adcv2/supports_tls answers true');
  if (status === 200 && word === 'mixed') return pass('supports-tls', '/adcv2/supports_tls answers mixed (mutual TLS is supported)');
  if (status === 200 && word === 'false') return fail('supports-tls', 'error', 'MTLS_NOT_SUPPORTED', '/adcv2/supports_tls answers false: the instance does not support mutual TLS');
  return fail('supports-tls', 'warning', 'MTLS_NOT_SUPPORTED', `could not confirm mutual TLS support: /adcv2/supports_tls answered HTTP ${status} "${word.slice(0, 40)}"`);
}

function tlsSni(property: TableRecord | undefined): InstanceCheck {
  if (!property) return pass('tls-sni', `${SNI_PROPERTY} is not set (it defaults to true)`);
  if ((property['value'] ?? '').trim().toLowerCase() === 'false') {
    return fail('tls-sni', 'error', 'TLS_SNI_DISABLED', `${SNI_PROPERTY} is false: mTLS MIDs go Down; set it to true`);
  }
  return pass('tls-sni', `${SNI_PROPERTY} is ${property['value'] || '(empty)'}`);
}

/** sys_plugins first; some instances expose plugins only through the v_plugin view. */
async function mutualAuthPlugin(client: InstanceClient): Promise<InstanceCheck> {
  let [plugin] = await client.tableGet('sys_plugins', { query: `id=${PLUGIN}`, fields: ['id', 'name', 'active'], limit: 1 });
  if (!plugin) {
    [plugin] = await client.tableGet('v_plugin', { query: `id=${PLUGIN}`, fields: ['id', 'name', 'active'], limit: 1 }).catch((err: unknown) => {
      if (isMidcertError(err) && (err.code === 'INSTANCE_NOT_FOUND' || err.code === 'INSTANCE_BAD_REQUEST')) return [];
      throw err;
    });
  }
  if (!plugin) return fail('mutual-auth-plugin', 'error', 'MUTUAL_AUTH_PLUGIN_INACTIVE', `the plugin ${PLUGIN} is not installed`);
  const active = (plugin['active'] ?? '').trim().toLowerCase();
  if (active === 'true' || active === 'active') return pass('mutual-auth-plugin', `the plugin ${PLUGIN} is active`);
  return fail('mutual-auth-plugin', 'error', 'MUTUAL_AUTH_PLUGIN_INACTIVE', `the plugin ${PLUGIN} is not active (active = "${active}")`);
}

async function caChain(client: InstanceClient): Promise<InstanceCheck> {
  const chains = await activeCaChain(client);
  if (chains.length === 0) return fail('ca-chain', 'warning', 'CA_CHAIN_MISSING', 'no active, published CA chain in sys_ca_certificate yet; publish one before the first rotation');
  const c = chains[0] as (typeof chains)[number];
  return pass('ca-chain', `active chain "${c.name}" (${c.certificates.length} certificates, first ${c.sha256.slice(0, 16)}…) reads ${c.publishStatus}`);
}

async function midUsers(client: InstanceClient, options: InstancePreflightOptions): Promise<InstanceCheck> {
  const names = options.midNames ?? [];
  const problems: Array<{ code: string; message: string }> = [];
  for (const name of names) {
    try {
      await findMidUser(client, name, options.midUsers);
    } catch (err) {
      problems.push(isMidcertError(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String(err) });
    }
  }
  if (problems.length === 0) return pass('mid-users', `the service users of ${names.length} MID(s) exist and hold mid_server`);
  return fail('mid-users', 'error', (problems[0] as { code: string }).code, problems.map((p) => p.message).join('; '));
}

async function guard(name: InstanceCheckName, run: () => Promise<InstanceCheck>): Promise<InstanceCheck> {
  try {
    return await run();
  } catch (err) {
    return failed(name, err);
  }
}

function failed(name: InstanceCheckName, err: unknown): InstanceCheck {
  if (isMidcertError(err)) return fail(name, 'error', err.code, err.message);
  return fail(name, 'error', 'INTERNAL', err instanceof Error ? err.message : String(err));
}

async function settle<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}
