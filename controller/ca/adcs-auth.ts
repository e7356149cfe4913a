import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { createType1Message, createType3Message, parseType2Message, type Type2Message } from 'httpntlm/ntlm.js';
import { MidcertError } from '../../common/errors.js';
import { readSecretFile, type CaConfig } from '../config.js';
import { CaAnswer, unreachable } from './adapter.js';
import { readBasicAuth, type TlsMaterial } from './files.js';
import { httpCall, originOf, type HttpOptions, type HttpReply } from './http.js';

/**
 * How the `adcs` adapter authenticates to IIS in front of certsrv (docs/ca-adapters.md):
 *   basic        Authorization: Basic on every request (ca.username + ca.passwordFile)
 *   negotiate    Kerberos through GSSAPI (npm `kerberos`, loaded only for this mode): the
 *                environment's ticket (KRB5CCNAME) or one of its own from ca.keytab + ca.principal;
 *                SPN HTTP@<host of ca.url> unless ca.spn says otherwise; a fresh token per request
 *   ntlm         NTLMv2 only (message layout from npm `httpntlm`), on one kept-alive connection,
 *                one handshake at a time (NTLM authenticates the connection, not the request)
 *   client-cert  the TLS client certificate alone (ca.clientCertFile + ca.clientKeyFile)
 * A 401 is never retried: it ends the request as `rejected` with the cause in one line, so a
 * wrong password cannot lock the directory account.
 */
export type AdcsAuthMode = 'basic' | 'negotiate' | 'ntlm' | 'client-cert';

/** An authentication failure: final, never retried; `ca probe` reports it as CA_AUTH_FAILED. */
export class CaAuthFailure extends CaAnswer {
  constructor(reason: string) {
    super({ kind: 'rejected', reason });
    this.name = 'CaAuthFailure';
  }
}

export interface AdcsAuth {
  readonly mode: AdcsAuthMode;
  /** Sends one request authenticated; the reply may still be any status (401 already explained). */
  send(url: string, options: HttpOptions): Promise<HttpReply>;
}

/** ca.auth, or its default: basic when ca.username is set, client-cert when ca.clientCertFile is. */
export function adcsAuthMode(cfg: CaConfig): AdcsAuthMode {
  if (cfg.auth) return cfg.auth;
  if (cfg.username) return 'basic';
  if (cfg.clientCertFile) return 'client-cert';
  throw new MidcertError('CONFIG_INVALID', 'ca.type adcs needs credentials: set ca.auth (basic | negotiate | ntlm | client-cert), or ca.username + ca.passwordFile, or ca.clientCertFile + ca.clientKeyFile');
}

export async function createAdcsAuth(cfg: CaConfig, base: string, tls: TlsMaterial): Promise<AdcsAuth> {
  const mode = adcsAuthMode(cfg);
  const where = originOf(base);
  switch (mode) {
    case 'basic': {
      const authorization = await readBasicAuth(cfg);
      if (!authorization) throw new MidcertError('CONFIG_INVALID', 'ca.auth basic needs ca.username and ca.passwordFile');
      return {
        mode,
        send: async (url, options) => explain401(mode, where, await httpCall(url, withHeader(options, authorization)), 'ca.username and ca.passwordFile (wrong user name or password)'),
      };
    }
    case 'client-cert':
      if (!tls.cert) throw new MidcertError('CONFIG_INVALID', 'ca.auth client-cert needs ca.clientCertFile and ca.clientKeyFile');
      return {
        mode,
        send: async (url, options) => explain401(mode, where, await httpCall(url, options), 'ca.clientCertFile (is it mapped to an account?)'),
      };
    case 'negotiate':
      return negotiateAuth(cfg, base, where);
    case 'ntlm':
      return ntlmAuth(cfg, base, where, tls);
  }
}

function withHeader(options: HttpOptions, authorization: string | undefined): HttpOptions {
  if (!authorization) return options;
  return { ...options, headers: { ...options.headers, Authorization: authorization } };
}

/** The schemes a 401 offers, lower-case (Negotiate, NTLM, Basic…). */
export function offeredSchemes(reply: HttpReply): string[] {
  const raw = reply.headers['www-authenticate'];
  const values = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  // Node joins repeated headers with ", " for some names; split on scheme starts too.
  return values.flatMap((v) => v.split(/,\s*(?=[A-Za-z][A-Za-z0-9-]*\s*(?:[\s,]|$))/)).map((v) => v.trim().split(/[\s,]+/, 1)[0]?.toLowerCase() ?? '').filter(Boolean);
}

const SCHEME_NAME: Record<AdcsAuthMode, string> = { basic: 'basic', negotiate: 'negotiate', ntlm: 'ntlm', 'client-cert': '' };

/** A 401 becomes one final line naming the cause; any other status passes through. */
function explain401(mode: AdcsAuthMode, where: string, reply: HttpReply, cause: string): HttpReply {
  if (reply.status !== 401) return reply;
  const offered = offeredSchemes(reply);
  const offers = offered.length ? offered.map(displayScheme).join(', ') : 'nothing';
  const wanted = SCHEME_NAME[mode];
  if (wanted && !offered.includes(wanted)) {
    const hint = offered.includes('negotiate') ? 'set ca.auth: negotiate (or ntlm)' : offered.includes('ntlm') ? 'set ca.auth: ntlm' : offered.includes('basic') ? 'set ca.auth: basic' : 'check the IIS authentication settings of certsrv';
    throw new CaAuthFailure(`the CA at ${where} does not accept ${displayScheme(wanted)} authentication (HTTP 401; it offers ${offers})${mode === 'basic' ? ': Basic is disabled in IIS' : ''}; ${hint}`);
  }
  throw new CaAuthFailure(`${displayScheme(mode)} authentication to the CA at ${where} failed (HTTP 401); check ${cause}; not retried`);
}

function displayScheme(s: string): string {
  if (s === 'ntlm') return 'NTLM';
  if (s === 'client-cert') return 'client certificate';
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---- Negotiate (Kerberos through GSSAPI) ----

/** The part of npm `kerberos` used here (the package is optional; see loadKerberos). */
interface KerberosClient {
  step(challenge: string): Promise<string>;
}
interface KerberosModule {
  initializeClient(service: string, options?: { principal?: string; mechOID?: number; flags?: number }): Promise<KerberosClient>;
  GSS_MECH_OID_SPNEGO: number;
  GSS_C_MUTUAL_FLAG: number;
  GSS_C_SEQUENCE_FLAG: number;
}

// A variable specifier: bundlers leave the optional native binding to run time.
const KERBEROS_PACKAGE = 'kerberos';

async function loadKerberos(): Promise<KerberosModule> {
  try {
    const mod = (await import(KERBEROS_PACKAGE)) as KerberosModule & { default?: KerberosModule };
    return typeof mod.initializeClient === 'function' ? mod : (mod.default as KerberosModule);
  } catch (err) {
    throw new MidcertError('CONFIG_INVALID', `ca.auth negotiate needs the npm package "kerberos" (GSSAPI binding), which is not installed or did not build (${(err as Error).message.split('\n')[0]}); install libkrb5-dev, then run: npm install kerberos`);
  }
}

/** The SPN for ca.url: HTTP@<host> (ca.spn wins; accepts HTTP/host too). */
export function servicePrincipal(cfg: CaConfig, base: string): string {
  const spn = cfg.spn ?? `HTTP@${new URL(base).hostname}`;
  return spn.replace(/^([^@/]+)\/([^@]+)(@.*)?$/, '$1@$2');
}

async function negotiateAuth(cfg: CaConfig, base: string, where: string): Promise<AdcsAuth> {
  if (Boolean(cfg.keytab) !== Boolean(cfg.principal)) throw new MidcertError('CONFIG_INVALID', 'ca.keytab and ca.principal go together: set both (the controller gets its own ticket) or neither (it uses KRB5CCNAME)');
  if (cfg.keytab) {
    await access(cfg.keytab, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
      throw new MidcertError('CONFIG_UNREADABLE', `ca.keytab ${cfg.keytab} cannot be read: ${err.code ?? 'error'}`);
    });
  }
  const kerberos = await loadKerberos();
  const spn = servicePrincipal(cfg, base);
  if (/^HTTP@\d+\.\d+\.\d+\.\d+$|^HTTP@\[/.test(spn) && !cfg.spn) {
    throw new MidcertError('CONFIG_INVALID', `ca.auth negotiate: the host of ca.url is an IP address, so the SPN would be ${spn}, which no KDC knows; use the CA's DNS name in ca.url or set ca.spn`);
  }
  if (cfg.keytab && cfg.principal) {
    // MIT krb5 gets initiator credentials from a client keytab by itself; they go to a private
    // in-memory cache, never the user's.
    process.env.KRB5_CLIENT_KTNAME = `FILE:${cfg.keytab}`;
    process.env.KRB5CCNAME = `MEMORY:midcert-ca-${process.pid}`;
  }
  const flags = kerberos.GSS_C_MUTUAL_FLAG | kerberos.GSS_C_SEQUENCE_FLAG;
  const token = async (): Promise<{ client: KerberosClient; header: string }> => {
    try {
      const client = await kerberos.initializeClient(spn, { mechOID: kerberos.GSS_MECH_OID_SPNEGO, flags, ...(cfg.principal ? { principal: cfg.principal } : {}) });
      const header = `Negotiate ${await client.step('')}`;
      return { client, header };
    } catch (err) {
      throw kerberosFailure((err as Error).message ?? String(err), spn, cfg);
    }
  };
  return {
    mode: 'negotiate',
    send: async (url, options) => {
      const { header } = await token();
      const reply = await httpCall(url, withHeader(options, header));
      return explain401('negotiate', where, reply, `the ticket for ${spn}: the CA did not accept it (wrong SPN or stale server keytab, clock skew, or the account may not enroll)`);
    },
  };
}

/** GSSAPI's own message, turned into the cause an operator acts on. */
export function kerberosFailure(message: string, spn: string, cfg: CaConfig): CaAnswer {
  const m = message.replace(/\s+/g, ' ').trim();
  const own = cfg.keytab ? `ca.keytab ${cfg.keytab} (ca.principal ${cfg.principal})` : 'KRB5CCNAME';
  if (/cannot (find|contact) (any )?KDC|Cannot resolve network address for KDC|Connection refused|timed out/i.test(m)) {
    return unreachable(`Kerberos: cannot reach a KDC for the realm (${m}); check krb5.conf and the network`);
  }
  if (/clock skew/i.test(m)) return new CaAuthFailure(`Kerberos: clock skew too great between this host and the KDC (${m}); fix the clock (NTP)`);
  if (/not found in Kerberos database|Server .* not found|unknown server/i.test(m)) {
    return new CaAuthFailure(`Kerberos: wrong SPN: the KDC knows no principal ${spn} (${m}); use the CA's DNS name in ca.url (not an IP or CNAME) or set ca.spn`);
  }
  if (/ticket expired|credentials have expired/i.test(m)) return new CaAuthFailure(`Kerberos: the ticket in ${own} has expired (${m}); run kinit again`);
  if (/no (Kerberos )?credentials|credentials cache.*not found|No credentials cache|No such file|not found in key ?table|keytab/i.test(m)) {
    return new CaAuthFailure(`Kerberos: no ticket: ${cfg.keytab ? `cannot get one from ${own}` : 'KRB5CCNAME holds none'} (${m}); ${cfg.keytab ? 'check the keytab holds ca.principal' : 'run kinit, or set ca.keytab + ca.principal'}`);
  }
  if (/pre-?authentication failed|password incorrect|decrypt integrity check failed/i.test(m)) {
    return new CaAuthFailure(`Kerberos: the KDC rejected the key of ${cfg.principal ?? 'the client principal'} (wrong password or outdated keytab: ${m})`);
  }
  return new CaAuthFailure(`Kerberos (GSSAPI) failed for ${spn}: ${m}`);
}

// ---- NTLM (NTLMv2 only, one kept-alive connection) ----

/** DOMAIN\user → domain + user; user@domain (UPN) goes whole as the user name, domain empty (MS-NLMP). */
export function ntlmIdentity(username: string): { username: string; domain: string } {
  const slash = username.indexOf('\\');
  if (slash > 0) return { domain: username.slice(0, slash), username: username.slice(slash + 1) };
  if (username.includes('@')) return { domain: '', username };
  throw new MidcertError('CONFIG_INVALID', `ca.auth ntlm: ca.username must be DOMAIN\\user or user@domain (got ${username})`);
}

const NEGOTIATE_EXTENDED_SECURITY = 0x00080000;
const NEGOTIATE_TARGET_INFO = 0x00800000;

async function ntlmAuth(cfg: CaConfig, base: string, where: string, tls: TlsMaterial): Promise<AdcsAuth> {
  if (!cfg.username || !cfg.passwordFile) throw new MidcertError('CONFIG_INVALID', 'ca.auth ntlm needs ca.username (DOMAIN\\user or user@domain) and ca.passwordFile');
  const identity = ntlmIdentity(cfg.username);
  const password = await readSecretFile(cfg.passwordFile, 'ca.passwordFile');
  if (!password) throw new MidcertError('CONFIG_INVALID', `ca.passwordFile ${cfg.passwordFile} is empty`);
  const https = new URL(base).protocol === 'https:';
  // One socket, kept alive: the handshake and the request it authenticates must share it.
  const agentOptions = { keepAlive: true, maxSockets: 1, maxFreeSockets: 1, timeout: 60_000 };
  const agent = https ? new HttpsAgent({ ...agentOptions, ca: tls.ca, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }) : new HttpAgent(agentOptions);
  const who = identity.domain ? `${identity.domain}\\${identity.username}` : identity.username;
  let queue: Promise<unknown> = Promise.resolve();

  const exchange = async (url: string, options: HttpOptions): Promise<HttpReply> => {
    let first: Socket | undefined;
    let second: Socket | undefined;
    const type1 = createType1Message({ domain: '', workstation: '' });
    const opening = await httpCall(url, { ...options, body: options.method === 'POST' ? '' : undefined, agent, onSocket: (s) => { first = s; }, headers: { ...options.headers, Authorization: type1 } });
    if (opening.status !== 401) {
      // Not asked to authenticate: a GET has its answer; a POST goes again with its body.
      return options.method === 'GET' ? opening : httpCall(url, { ...options, agent });
    }
    const challenge = ntlmChallenge(opening);
    if (!challenge) return explain401('ntlm', where, opening, 'that the CA answers an NTLM negotiate message with a challenge (it sent none)');
    const type2 = parseType2Message(challenge, () => undefined);
    if (!type2) throw new CaAuthFailure(`NTLM: the CA at ${where} sent an unreadable challenge`);
    requireNtlmV2(type2, where);
    const type3 = createType3Message(type2, { ...identity, password, workstation: '' });
    const reply = await httpCall(url, { ...options, agent, onSocket: (s) => { second = s; }, headers: { ...options.headers, Authorization: type3 } });
    if (first && second && first !== second) {
      throw new CaAuthFailure(`NTLM: the CA at ${where} closed the connection between the NTLM challenge and the answer (NTLM authenticates one kept-alive connection; allow keep-alive in front of certsrv)`);
    }
    return explain401('ntlm', where, reply, `ca.username (${who}) and ca.passwordFile (wrong password, unknown user, or NTLMv2 refused by the domain)`);
  };

  return {
    mode: 'ntlm',
    // One handshake at a time on the one socket: interleaved handshakes would break each other.
    send: (url, options) => {
      const run = queue.then(() => exchange(url, options));
      queue = run.catch(() => undefined);
      return run;
    },
  };
}

function ntlmChallenge(reply: HttpReply): string | undefined {
  const raw = reply.headers['www-authenticate'];
  const values = Array.isArray(raw) ? raw : raw === undefined ? [] : raw.split(/,\s*/);
  return values.map((v) => v.trim()).find((v) => /^NTLM\s+[A-Za-z0-9+/=]{16,}$/.test(v));
}

/** midcert answers only with NTLMv2, which needs the server's target info; never NTLMv1. */
function requireNtlmV2(type2: Type2Message, where: string): void {
  if (!(type2.negotiateFlags & NEGOTIATE_EXTENDED_SECURITY) || !(type2.negotiateFlags & NEGOTIATE_TARGET_INFO) || !type2.targetInfo?.length) {
    throw new CaAuthFailure(`NTLM: the CA at ${where} offers only NTLMv1 (no extended security / target info); midcert speaks NTLMv2 only (set LmCompatibilityLevel 5 or use ca.auth negotiate)`);
  }
}
