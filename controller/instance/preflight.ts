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
    settle(client.tableGet('sys_properties', { query: `name=${SNI_PROPERTY}`, fields: ['name', 'value'], limit: 10 })),
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
    // Re-checked: a dropped condition would return any property (SND c_TableAPI.md, vendor-facts §1).
    checks.set('tls-sni', tlsSni(sni.value.find((r) => r['name'] === SNI_PROPERTY)));
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

/**
 * SND platform-administration/search-administration/verify-adcv2-inbound-mtls-enabled.md: "If the
 * response … is anything other than `true`, inbound mTLS support isn't activated" (vendor-facts §2).
 * Only `true` passes; `mixed`, `false`, HTML, an error status: MTLS_NOT_SUPPORTED, quoting the body.
 */
function supportsTls(status: number, body: string): InstanceCheck {
  const word = body.trim();
  if (status === 200 && word.toLowerCase() === 'true') return pass('supports-tls', '/adcv2/supports_tls answers true');
  const quoted = JSON.stringify(word.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, 100));
  return fail('supports-tls', 'error', 'MTLS_NOT_SUPPORTED',
    `/adcv2/supports_tls answered HTTP ${status} ${quoted}, not true: inbound mutual TLS is not activated on this instance (only "true" means it is)`);
}

function tlsSni(property: TableRecord | undefined): InstanceCheck {
  if (!property) return pass('tls-sni', `${SNI_PROPERTY} is not set (it defaults to true)`);
  if ((property['value'] ?? '').trim().toLowerCase() === 'false') {
    return fail('tls-sni', 'error', 'TLS_SNI_DISABLED', `${SNI_PROPERTY} is false: mTLS MIDs go Down; set it to true`);
  }
  return pass('tls-sni', `${SNI_PROPERTY} is ${property['value'] || '(empty)'}`);
}

/**
 * vendor-facts §1: sys_plugins keeps the plugin ID in `source` (SND c_GlidePluginManagerScopedAPI.md
 * `now_GR.getValue('source')`), v_plugin has `id`. A condition on a field the table lacks is
 * silently dropped by default (SND c_TableAPI.md), so every row returned is re-checked here: only a
 * row whose source/id IS the plugin counts. No `active` condition: it is interpreted client-side.
 */
async function mutualAuthPlugin(client: InstanceClient): Promise<InstanceCheck> {
  let plugin: TableRecord | undefined;
  let note = '';
  try {
    const rows = await client.tableGet('sys_plugins', { query: `source=${PLUGIN}`, fields: ['source', 'name', 'active'], limit: 10 });
    plugin = rows.find((r) => r['source'] === PLUGIN);
  } catch (err) {
    if (!isMidcertError(err) || err.code !== 'INSTANCE_FORBIDDEN') throw err;
    note = ' (sys_plugins is not readable for this user; checked v_plugin)';
  }
  if (!plugin) {
    const rows = await client.tableGet('v_plugin', { query: `id=${PLUGIN}`, fields: ['id', 'name', 'active'], limit: 10 }).catch((err: unknown) => {
      if (isMidcertError(err) && (err.code === 'INSTANCE_NOT_FOUND' || err.code === 'INSTANCE_BAD_REQUEST' || (err.code === 'INSTANCE_FORBIDDEN' && note !== ''))) {
        if (err.code === 'INSTANCE_FORBIDDEN') return undefined;
        return [];
      }
      throw err;
    });
    if (rows === undefined) return fail('mutual-auth-plugin', 'warning', 'CHECK_SKIPPED', `cannot check the plugin ${PLUGIN}: neither sys_plugins nor v_plugin is readable for this user`);
    plugin = rows.find((r) => r['id'] === PLUGIN);
  }
  if (!plugin) return fail('mutual-auth-plugin', 'error', 'MUTUAL_AUTH_PLUGIN_INACTIVE', `the plugin ${PLUGIN} is not installed${note}`);
  const active = (plugin['active'] ?? '').trim().toLowerCase();
  const state = pluginState(active);
  if (state === 'active') return pass('mutual-auth-plugin', `the plugin ${PLUGIN} is active (active = "${active}")${note}`);
  if (state === 'inactive') return fail('mutual-auth-plugin', 'error', 'MUTUAL_AUTH_PLUGIN_INACTIVE', `the plugin ${PLUGIN} is not active (active = "${active}")${note}`);
  return fail('mutual-auth-plugin', 'warning', 'MUTUAL_AUTH_PLUGIN_UNKNOWN', `cannot tell whether the plugin ${PLUGIN} is active: active = "${active.slice(0, 40)}"${note}`);
}

/** vendor-facts §1: true/1/active are active; false/0/inactive/empty are not; anything else unknown. */
export function pluginState(active: string): 'active' | 'inactive' | 'unknown' {
  const word = active.trim().toLowerCase();
  if (['true', '1', 'active'].includes(word)) return 'active';
  if (['false', '0', 'inactive', ''].includes(word)) return 'inactive';
  return 'unknown';
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
