import forge from 'node-forge';
import { MidcertError } from '../common/errors.js';

const asn1 = forge.asn1;

export interface Attribute {
  type: string; // short name (CN) or dotted OID when unknown
  value: string;
}
/** A relative distinguished name; usually one attribute, several when joined with `+`. */
export type Rdn = Attribute[];
/** RDNs in ASN.1 (encoding) order: the most general first, e.g. C, O, OU, CN. */
export type DistinguishedName = Rdn[];

const OIDS: Record<string, string> = {
  CN: '2.5.4.3', SN: '2.5.4.4', SERIALNUMBER: '2.5.4.5', C: '2.5.4.6', L: '2.5.4.7', ST: '2.5.4.8',
  STREET: '2.5.4.9', O: '2.5.4.10', OU: '2.5.4.11', TITLE: '2.5.4.12', GN: '2.5.4.42',
  DC: '0.9.2342.19200300.100.1.25', UID: '0.9.2342.19200300.100.1.1', EMAILADDRESS: '1.2.840.113549.1.9.1',
};
const ALIASES: Record<string, string> = { E: 'EMAILADDRESS', S: 'ST', GIVENNAME: 'GN', SURNAME: 'SN', USERID: 'UID' };
const NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(OIDS).map(([name, oid]) => [oid, name === 'EMAILADDRESS' ? 'emailAddress' : name]),
);
const IA5_TYPES = new Set([OIDS.DC, OIDS.EMAILADDRESS]);
const PRINTABLE_TYPES = new Set([OIDS.C, OIDS.SERIALNUMBER]);
const MAX_SUBJECT_CHARS = 4096;

/**
 * Parses a subject given either as RFC 4514 (`CN=mid01,O=Org`, most specific first) or in the
 * OpenSSL slash form (`/O=Org/CN=mid01`, encoding order). Returns RDNs in encoding order.
 */
export function parseSubject(text: string): DistinguishedName {
  const input = text.trim();
  if (input.length === 0) throw new MidcertError('SUBJECT_INVALID', 'the subject is empty');
  if (input.length > MAX_SUBJECT_CHARS) throw new MidcertError('SUBJECT_INVALID', 'the subject is too long');
  if (input.startsWith('/')) return splitEscaped(input.slice(1), '/').map(parseRdn);
  return splitEscaped(input, ',').map(parseRdn).reverse();
}

function parseRdn(text: string): Rdn {
  return splitEscaped(text, '+').map(parseAttribute);
}

function parseAttribute(text: string): Attribute {
  const eq = indexOfUnescaped(text, '=');
  if (eq <= 0) throw new MidcertError('SUBJECT_INVALID', `"${text.trim()}" is not TYPE=value`);
  const type = canonicalType(text.slice(0, eq).trim());
  const value = unescapeValue(text.slice(eq + 1).trim());
  if (value.length === 0) throw new MidcertError('SUBJECT_INVALID', `${type} has an empty value`);
  if (type === 'C' && !/^[A-Za-z]{2}$/.test(value)) {
    throw new MidcertError('SUBJECT_INVALID', `C must be a two-letter country code, not "${value}"`);
  }
  return { type, value };
}

function canonicalType(raw: string): string {
  if (/^\d+(\.\d+)+$/.test(raw)) return NAMES[raw] ?? raw;
  const upper = raw.toUpperCase();
  const name = ALIASES[upper] ?? upper;
  if (!OIDS[name]) throw new MidcertError('SUBJECT_INVALID', `unknown attribute type "${raw}"`);
  return name === 'EMAILADDRESS' ? 'emailAddress' : name;
}

function oidOf(type: string): string {
  return OIDS[type.toUpperCase()] ?? type;
}

function splitEscaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '\\' && i + 1 < text.length) {
      current += ch + text[++i];
    } else if (ch === separator) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

function indexOfUnescaped(text: string, ch: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === ch) return i;
  }
  return -1;
}

function unescapeValue(raw: string): string {
  if (raw.startsWith('#')) throw new MidcertError('SUBJECT_INVALID', 'hex-encoded (#...) attribute values are not supported');
  const value = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] as string;
    if (ch !== '\\') {
      bytes.push(...Buffer.from(ch, 'utf8'));
      continue;
    }
    const hex = value.slice(i + 1, i + 3);
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (i + 1 < value.length) {
      bytes.push(...Buffer.from(value[++i] as string, 'utf8'));
    } else {
      throw new MidcertError('SUBJECT_INVALID', 'a value ends with a lone backslash');
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** RFC 4514 string: most specific RDN first, special characters escaped. */
export function formatName(dn: DistinguishedName): string {
  return [...dn].reverse().map((rdn) => rdn.map((a) => `${a.type}=${escapeValue(a.value)}`).join('+')).join(',');
}

function escapeValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  out = out.replace(/[\x00-\x1f]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** DER-ready ASN.1 Name (SEQUENCE OF SET OF AttributeTypeAndValue). */
export function encodeName(dn: DistinguishedName): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, dn.map((rdn) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, rdn.map(encodeAttribute))));
}

function encodeAttribute(attr: Attribute): forge.asn1.Asn1 {
  const oid = oidOf(attr.type);
  const stringType = IA5_TYPES.has(oid) ? asn1.Type.IA5STRING : PRINTABLE_TYPES.has(oid) ? asn1.Type.PRINTABLESTRING : asn1.Type.UTF8;
  const value = stringType === asn1.Type.UTF8 ? forge.util.encodeUtf8(attr.value) : attr.value;
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
    asn1.create(asn1.Class.UNIVERSAL, stringType, false, value),
  ]);
}

/** Decodes an ASN.1 Name as parsed by forge.asn1.fromDer. */
export function decodeName(node: forge.asn1.Asn1): DistinguishedName {
  return children(node).map((set) => children(set).map((atv) => {
    const [oidNode, valueNode] = children(atv);
    if (!oidNode || !valueNode) throw new Error('malformed AttributeTypeAndValue');
    const oid = asn1.derToOid(oidNode.value as string);
    return { type: NAMES[oid] ?? oid, value: decodeString(valueNode) };
  }));
}

function decodeString(node: forge.asn1.Asn1): string {
  const raw = typeof node.value === 'string' ? node.value : '';
  if (node.type === asn1.Type.UTF8) return forge.util.decodeUtf8(raw);
  if (node.type === asn1.Type.BMPSTRING) return Buffer.from(raw, 'latin1').swap16().toString('utf16le');
  return raw;
}

function children(node: forge.asn1.Asn1): forge.asn1.Asn1[] {
  if (!Array.isArray(node.value)) throw new Error('expected a constructed ASN.1 value');
  return node.value;
}

/** Byte-for-byte name comparison is what chain building needs; this compares canonical text. */
export function sameName(a: DistinguishedName, b: DistinguishedName): boolean {
  return formatName(a).toLowerCase() === formatName(b).toLowerCase();
}
