import type { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { MidcertError } from '../common/errors.js';
import { bitString, bool, keyIdentifier, octets, oid, seq, smallInt, toDer } from './asn1.js';
import { OID } from './certificate.js';

const asn1 = forge.asn1;
type Node = forge.asn1.Asn1;

export type KeyUsageName = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign';
const KU_BITS: KeyUsageName[] = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign'];

function extension(id: string, critical: boolean, value: Node): Node {
  const parts = [oid(id)];
  if (critical) parts.push(bool(true));
  parts.push(octets(toDer(value)));
  return seq(parts);
}

export function keyUsageExtension(usages: KeyUsageName[]): Node {
  let bits = 0;
  for (const usage of usages) bits |= 0x80 >> KU_BITS.indexOf(usage);
  let unused = 0;
  while (unused < 7 && (bits & (1 << unused)) === 0) unused++;
  return extension(OID.keyUsage, true, bitString(Buffer.from([bits]), bits === 0 ? 0 : unused));
}

export function extKeyUsageExtension(oids: string[]): Node {
  return extension(OID.extKeyUsage, false, seq(oids.map(oid)));
}

export function basicConstraintsExtension(ca: boolean, pathLen?: number): Node {
  const parts: Node[] = ca ? [bool(true)] : [];
  if (ca && pathLen !== undefined) parts.push(smallInt(pathLen));
  return extension(OID.basicConstraints, true, seq(parts));
}

export function subjectKeyIdExtension(key: KeyObject): Node {
  return extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(key)));
}

export function authorityKeyIdExtension(issuerKey: KeyObject): Node {
  return extension(OID.authorityKeyIdentifier, false, seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier(issuerKey).toString('latin1')),
  ]));
}

/** SANs given as `DNS:name`, `IP:addr`, `email:addr` or `URI:uri` (OpenSSL's spelling). */
export function subjectAltNameExtension(names: string[]): Node {
  return extension(OID.subjectAltName, false, seq(names.map(generalName)));
}

function generalName(text: string): Node {
  const colon = text.indexOf(':');
  const kind = text.slice(0, colon).trim().toUpperCase();
  const value = text.slice(colon + 1).trim();
  if (colon <= 0 || value.length === 0 || value.length > 1024) {
    throw new MidcertError('SAN_INVALID', `"${text}" is not TYPE:value (DNS:, IP:, email:, URI:)`);
  }
  const tagged = (tag: number, v: string): Node => asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, false, v);
  if (kind === 'DNS') {
    if (!/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(value)) {
      throw new MidcertError('SAN_INVALID', `"${value}" is not a DNS name`);
    }
    return tagged(2, value);
  }
  if (kind === 'IP') return tagged(7, ipBytes(value).toString('latin1'));
  if (kind === 'EMAIL') return tagged(1, value);
  if (kind === 'URI') return tagged(6, value);
  throw new MidcertError('SAN_INVALID', `SAN type "${kind}" is not supported (use DNS, IP, email or URI)`);
}

function ipBytes(value: string): Buffer {
  const version = isIP(value);
  if (version === 4) return Buffer.from(value.split('.').map(Number));
  if (version === 6) return ipv6Bytes(value);
  throw new MidcertError('SAN_INVALID', `"${value}" is not an IP address`);
}

function ipv6Bytes(value: string): Buffer {
  const [head = '', tail] = value.split('::');
  const parts = (s: string): string[] => (s ? s.split(':') : []);
  const left = parts(head);
  const right = tail === undefined ? [] : parts(tail);
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return Buffer.from(groups.flatMap((g: string) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff]; }));
}

