import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import { MidcertError } from '../common/errors.js';
import { writeFileAtomic } from '../common/fs.js';
import { LIMITS, assertSize } from '../common/limits.js';
import { fromDerBuffer } from '../pki/asn1.js';
import { OID, readCertificates, type Certificate } from '../pki/certificate.js';
import { buildCsr, parseCsr, type ParsedCsr } from '../pki/csr.js';
import { issueCertificate, PROFILES } from '../pki/issue.js';
import { describeKey, generateKey, readPrivateKey, toPkcs8Pem, type KeySpec } from '../pki/keys.js';
import { toPem } from '../pki/pem.js';
import { isAgentName } from './store/validate.js';

/**
 * The fleet CA: a private root used ONLY for controller↔agent mutual TLS, never for MID
 * certificates (those come from the MID CA configured under `ca:`). It lives in
 * `<dataDir>/fleet/`: ca.pem + ca.key (the root), controller.pem + controller.key (the
 * controller's client identity, CN=midcert-controller — the name agents put on their operator
 * access list). Agent identities are signed from CSRs made on the agent hosts, so agent keys
 * never leave them. Keys are EC P-256: small, fast, and supported by grpc-js and OpenSSL alike.
 *
 * Trust model (docs/security.md): the controller identity is the only certificate this CA issues
 * with clientAuth, and the only one with midcert's operator EKU, which agents require of an
 * operator besides the CN. Agent identities are server-only, and the `midcert-` name space is
 * reserved, so no host that obtains an agent identity can act as the controller.
 */
export const CONTROLLER_CN = 'midcert-controller';

/** Names no agent identity may carry (as CN or SAN), compared case-insensitively. */
const RESERVED_PREFIX = 'midcert-';

/** True for names of operator identities: `midcert-controller` and the rest of `midcert-*`. */
export function isReservedIdentityName(name: string): boolean {
  return name.trim().toLowerCase().startsWith(RESERVED_PREFIX);
}

const DAY = 86_400_000;
const FLEET_KEY: KeySpec = { type: 'ec', curve: 'P-256' };
const CA_DAYS = 3650;
const CONTROLLER_DAYS = 730;
const AGENT_DAYS = 730;
/** `ensureFleetCa` re-issues the controller identity when it has fewer days left than this. */
const CONTROLLER_RENEW_DAYS = 30;
const MAX_SANS = 20;
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

export interface FleetPaths {
  dir: string;
  caCert: string;
  caKey: string;
  controllerCert: string;
  controllerKey: string;
}

export function fleetPaths(dataDir: string): FleetPaths {
  const dir = join(dataDir, 'fleet');
  return {
    dir,
    caCert: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca.key'),
    controllerCert: join(dir, 'controller.pem'),
    controllerKey: join(dir, 'controller.key'),
  };
}

/** A certificate with its key and the fleet root it chains to, ready for TLS options. */
export interface FleetIdentity {
  cert: Certificate;
  certPem: string;
  keyPem: string;
  /** The fleet root (trust anchor for the other side). */
  caPem: string;
}

export interface FleetCa {
  cert: Certificate;
  certPem: string;
  key: KeyObject;
}

export interface EnsureFleetOptions {
  now?: Date;
  caDays?: number;
  controllerDays?: number;
}

/**
 * Creates the fleet CA and the controller identity when missing; returns the files it wrote
 * (empty when everything was already there). An existing fleet CA is never replaced: every
 * agent trusts it. The root is built in a temporary directory renamed into place, so a crash or
 * a second `init` racing this one leaves either no fleet CA or a whole one.
 */
export async function ensureFleetCa(dataDir: string, options: EnsureFleetOptions = {}): Promise<{ created: string[] }> {
  const paths = fleetPaths(dataDir);
  const now = options.now ?? new Date();
  const created: string[] = [];
  if (!(await exists(paths.caCert)) && !(await exists(paths.caKey))) {
    const temp = join(dataDir, `.fleet.${randomBytes(6).toString('hex')}.tmp`);
    await mkdir(temp, { mode: 0o700 });
    try {
      const key = await generateKey(FLEET_KEY);
      const der = issueCertificate({
        subject: `CN=midcert fleet CA ${randomBytes(4).toString('hex')},O=midcert`, publicKey: createPublicKey(key), selfSignKey: key,
        profile: PROFILES.rootCa, notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: new Date(now.getTime() + (options.caDays ?? CA_DAYS) * DAY),
      });
      await writeFileAtomic(join(temp, 'ca.key'), toPkcs8Pem(key), { mode: 0o600 });
      await writeFileAtomic(join(temp, 'ca.pem'), toPem('CERTIFICATE', der), { mode: 0o644 });
      // rename() replaces an empty directory and fails on a full one (then another init won).
      await rename(temp, paths.dir);
      created.push(paths.caKey, paths.caCert);
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      // Another init won the race: its CA stands, ours is discarded (loadFleetCa checks it below).
      if (!['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  }
  const ca = await loadFleetCa(dataDir);
  if (await controllerIdentityNeedsIssue(paths, ca, now)) {
    const key = await generateKey(FLEET_KEY);
    const der = issueCertificate({
      subject: `CN=${CONTROLLER_CN},O=midcert`, publicKey: createPublicKey(key), profile: PROFILES.operator,
      notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: capTo(ca, new Date(now.getTime() + (options.controllerDays ?? CONTROLLER_DAYS) * DAY)),
      issuer: { subject: ca.cert.subject, key: ca.key, publicKey: ca.cert.publicKey },
    });
    // Key first, then certificate: a crash in between leaves a mismatch the next run repairs.
    await writeFileAtomic(paths.controllerKey, toPkcs8Pem(key), { mode: 0o600 });
    await writeFileAtomic(paths.controllerCert, toPem('CERTIFICATE', der), { mode: 0o644 });
    created.push(paths.controllerKey, paths.controllerCert);
  }
  return { created };
}

async function controllerIdentityNeedsIssue(paths: FleetPaths, ca: FleetCa, now: Date): Promise<boolean> {
  if (!(await exists(paths.controllerCert)) || !(await exists(paths.controllerKey))) return true;
  try {
    const identity = await readIdentity(paths.controllerCert, paths.controllerKey, ca.certPem);
    const issuedByThisCa = identity.cert.x509.verify(ca.cert.publicKey);
    // Identities from before the operator EKU existed are re-issued, or agents would refuse them.
    const isOperator = identity.cert.extKeyUsage?.includes('midcertOperator') ?? false;
    return !issuedByThisCa || !isOperator || identity.cert.notAfter.getTime() - now.getTime() < CONTROLLER_RENEW_DAYS * DAY;
  } catch {
    return true; // unreadable or mismatched: re-issue (it is ours to re-issue, unlike the CA)
  }
}

export async function loadFleetCa(dataDir: string): Promise<FleetCa> {
  const paths = fleetPaths(dataDir);
  const certPem = await readBounded(paths.caCert, 'fleet CA certificate');
  const keyPem = await readBounded(paths.caKey, 'fleet CA key');
  const cert = readCertificates(Buffer.from(certPem))[0];
  if (!cert || !cert.basicConstraints?.ca) throw new MidcertError('FLEET_CA_MISSING', `${paths.caCert} holds no CA certificate`);
  const key = readPrivateKey(Buffer.from(keyPem)).key;
  if (!createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new MidcertError('FLEET_CA_MISSING', `${paths.caKey} does not match ${paths.caCert}; restore both from a backup`);
  }
  return { cert, certPem, key };
}

/** The fleet root PEM: what an agent's `tls.clientCa` (and the controller's trust) is set to. */
export async function fleetCaPem(dataDir: string): Promise<string> {
  return readBounded(fleetPaths(dataDir).caCert, 'fleet CA certificate');
}

/** The controller's client identity for dialling agents (created by `midcert init`). */
export async function controllerIdentity(dataDir: string): Promise<FleetIdentity> {
  const paths = fleetPaths(dataDir);
  return readIdentity(paths.controllerCert, paths.controllerKey, await fleetCaPem(dataDir));
}

async function readIdentity(certPath: string, keyPath: string, caPem: string): Promise<FleetIdentity> {
  const certPem = await readBounded(certPath, 'certificate');
  const keyPem = await readBounded(keyPath, 'key');
  const cert = readCertificates(Buffer.from(certPem))[0];
  if (!cert) throw new MidcertError('FLEET_CA_MISSING', `${certPath} holds no certificate`);
  const key = readPrivateKey(Buffer.from(keyPem)).key;
  if (!createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new MidcertError('FLEET_CA_MISSING', `${keyPath} does not match ${certPath}; run midcert init to re-issue`);
  }
  return { cert, certPem, keyPem, caPem };
}

export interface AgentIdentityRequest {
  /** The agent's registered name: becomes CN and DNS SAN (the controller dials with serverName = name). */
  name: string;
  /** Extra SANs, `DNS:host` or `IP:addr` (e.g. the address the agent is dialled at). */
  sans?: string[];
  days?: number;
  now?: Date;
}

/**
 * Signs an agent's CSR as a server-only certificate (serverAuth, no clientAuth) from the fleet
 * CA; returns the PEM. The CA decides what goes in: subject CN=<name>, SANs DNS:<name> plus
 * `sans` — never the subject or SANs the CSR asks for, so an agent cannot obtain a certificate
 * naming another agent or an operator. Refuses reserved (operator) names, a CSR whose signature
 * does not verify, that asks to be a CA, or whose key is weak.
 */
export async function signAgentIdentity(dataDir: string, csrPem: string | Uint8Array, request: AgentIdentityRequest): Promise<string> {
  if (!isAgentName(request.name)) throw new MidcertError('CSR_REFUSED', `agent name "${request.name.slice(0, 80)}" is not a valid agent name`);
  if (isReservedIdentityName(request.name)) {
    throw new MidcertError('CSR_REFUSED', `"${request.name}" is in the reserved midcert-* name space of operator identities; an agent identity cannot carry it`);
  }
  const csr = checkAgentCsr(typeof csrPem === 'string' ? Buffer.from(csrPem) : csrPem);
  const sans = agentSans(request.name, request.sans ?? []);
  const days = request.days ?? AGENT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new MidcertError('USAGE', 'agent identity validity must be 1-3650 days');
  const ca = await loadFleetCa(dataDir);
  const now = request.now ?? new Date();
  const der = issueCertificate({
    subject: `CN=${request.name},O=midcert fleet`, publicKey: csr.publicKey, profile: { ...PROFILES.server, sans },
    notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: capTo(ca, new Date(now.getTime() + days * DAY)),
    issuer: { subject: ca.cert.subject, key: ca.key, publicKey: ca.cert.publicKey },
  });
  return toPem('CERTIFICATE', der);
}

/** Parses an agent CSR and applies the fleet policy (signature, no CA request, strong key). */
export function checkAgentCsr(bytes: Uint8Array): ParsedCsr {
  assertSize(bytes, LIMITS.pemBytes, 'CSR');
  let csr: ParsedCsr;
  try {
    csr = parseCsr(bytes);
  } catch (err) {
    throw new MidcertError('CSR_REFUSED', `cannot read the CSR: ${(err as Error).message}`, { cause: err });
  }
  if (!csr.signatureValid) throw new MidcertError('CSR_REFUSED', 'the CSR signature does not verify (or uses an unsupported algorithm)');
  const key = describeKey(csr.publicKey);
  if (key.type === 'RSA') {
    const exponent = Number(csr.publicKey.asymmetricKeyDetails?.publicExponent ?? 0n);
    if (key.bits < 2048 || key.bits > 8192) throw new MidcertError('CSR_REFUSED', `RSA-${key.bits} is refused (use 2048 to 8192 bits)`);
    if (exponent < 3 || exponent % 2 === 0) throw new MidcertError('CSR_REFUSED', `RSA public exponent ${exponent} is refused`);
  } else if (key.type === 'EC') {
    if (!['P-256', 'P-384', 'P-521'].includes(key.curve ?? '')) throw new MidcertError('CSR_REFUSED', `EC curve ${key.curve ?? '?'} is refused (use P-256, P-384 or P-521)`);
  } else {
    throw new MidcertError('CSR_REFUSED', `${key.type} keys are refused (use RSA or EC)`);
  }
  const asksCa = caRequest(csr.der);
  if (asksCa) throw new MidcertError('CSR_REFUSED', `the CSR asks for a CA certificate (${asksCa}); an agent identity is an end-entity certificate`);
  return csr;
}

/** What in the CSR's extension request asks for CA powers, or undefined. */
function caRequest(der: Buffer): string | undefined {
  const asn1 = forge.asn1;
  const info = (fromDerBuffer(der).value as forge.asn1.Asn1[])[0];
  const attributes = (info?.value as forge.asn1.Asn1[] | undefined)?.[3];
  if (!attributes || !Array.isArray(attributes.value)) return undefined;
  for (const attr of attributes.value) {
    const [type, values] = attr.value as forge.asn1.Asn1[];
    if (!type || !values || asn1.derToOid(type.value as string) !== EXTENSION_REQUEST) continue;
    for (const ext of ((values.value as forge.asn1.Asn1[])[0]?.value as forge.asn1.Asn1[]) ?? []) {
      const parts = ext.value as forge.asn1.Asn1[];
      const id = asn1.derToOid(parts[0]?.value as string);
      const octets = parts[parts.length - 1]?.value;
      if (typeof octets !== 'string') continue;
      const inner = asn1.fromDer(octets);
      if (id === OID.basicConstraints) {
        const first = (inner.value as forge.asn1.Asn1[])[0];
        if (first && first.type === asn1.Type.BOOLEAN && first.value !== '\x00') return 'basicConstraints CA:TRUE';
      }
      if (id === OID.keyUsage && typeof inner.value === 'string') {
        const bits = inner.value.charCodeAt(1);
        if (bits & 0x04) return 'keyUsage keyCertSign';
        if (bits & 0x02) return 'keyUsage cRLSign';
      }
    }
  }
  return undefined;
}

function agentSans(name: string, extra: string[]): string[] {
  const sans = [`DNS:${name}`];
  for (const raw of extra) {
    const san = raw.trim();
    if (!/^(DNS|IP):/i.test(san)) throw new MidcertError('SAN_INVALID', `"${san.slice(0, 80)}": agent identities carry only DNS: and IP: names`);
    const normal = `${san.slice(0, san.indexOf(':')).toUpperCase()}:${san.slice(san.indexOf(':') + 1)}`;
    if (isReservedIdentityName(normal.slice(normal.indexOf(':') + 1))) {
      throw new MidcertError('CSR_REFUSED', `"${san.slice(0, 80)}": the midcert-* name space is reserved for operator identities`);
    }
    if (!sans.includes(normal)) sans.push(normal);
  }
  if (sans.length > MAX_SANS) throw new MidcertError('SAN_INVALID', `at most ${MAX_SANS} SANs`);
  return sans;
}

/**
 * A fresh key and CSR for an agent identity. On a real host the agent makes these itself; the
 * lab uses this because there the "agent host" is this machine.
 */
export async function makeAgentKeyAndCsr(name: string, options: { sans?: string[]; keySpec?: KeySpec } = {}): Promise<{ keyPem: string; csrPem: string }> {
  const key = await generateKey(options.keySpec ?? FLEET_KEY);
  const csrPem = buildCsr(key, { subject: `CN=${name}`, sans: options.sans });
  return { keyPem: toPkcs8Pem(key), csrPem };
}

/** A certificate cannot usefully outlive its issuer. */
function capTo(ca: FleetCa, notAfter: Date): Date {
  return notAfter.getTime() > ca.cert.notAfter.getTime() ? ca.cert.notAfter : notAfter;
}

async function readBounded(path: string, what: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MidcertError('FLEET_CA_MISSING', code === 'ENOENT' ? `${path} does not exist; run midcert init` : `cannot read the ${what} ${path}: ${code ?? 'error'}`);
  }
  assertSize(bytes, LIMITS.pemBytes, what);
  return bytes.toString('utf8');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
