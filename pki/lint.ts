import type { KeyObject } from 'node:crypto';
import { LIMITS, assertCertificateCount, assertSize } from '../common/limits.js';
import { parseCertificate, type Certificate } from './certificate.js';
import { buildChain, type BuiltChain } from './chain.js';
import { describeKey, isKeyLabel, keyBlockEncoding, publicKeysEqual, readKeyBlock, type KeyEncoding } from './keys.js';
import { finding, type Finding } from './lint-codes.js';
import { scanPem, type PemBlock } from './pem.js';

export interface LintOptions {
  now?: Date;
  /** CERT_EXPIRING fires when the leaf has fewer days left than this (default 30). */
  expiringDays?: number;
}

export interface LintReport {
  ok: boolean;
  findings: Finding[];
}

const REBUILD = 'midcert-agent bundle build --cert leaf.pem --key key.pem --chain chain.pem -o bundle.pem';
const CERT_LABELS = new Set(['CERTIFICATE', 'X509 CERTIFICATE', 'TRUSTED CERTIFICATE']);

/**
 * Checks a MID bundle file (leaf, intermediates, root, then one unencrypted PKCS#8 key; LF line
 * endings; nothing else) and reports every deviation the MID's import would trip on. Throws
 * INPUT_TOO_LARGE past LIMITS.pemBytes or LIMITS.certsPerInput certificate blocks (the bounds
 * `cert show` and `bundle build` apply too), before parsing any certificate.
 */
export function lintBundle(bytes: Uint8Array, options: LintOptions = {}): LintReport {
  assertSize(bytes, LIMITS.pemBytes, 'bundle');
  const findings: Finding[] = [];
  const raw = Buffer.from(bytes).toString('latin1');
  if (!raw.includes('-----BEGIN ')) {
    findings.push(finding('NOT_PEM', 'the file holds no PEM block (binary DER or PKCS#12?)',
      'for a .pfx/.p12 run: midcert-agent bundle build --pfx file.pfx -o bundle.pem; for DER: openssl x509 -inform DER -in cert.der -out cert.pem'));
    return report(findings);
  }
  findings.push(...lintText(raw));
  let blocks: PemBlock[];
  try {
    blocks = scanPem(raw.replace(/[\r\x1a]/g, ''));
  } catch (err) {
    findings.push(finding('PEM_MALFORMED', (err as Error).message, `rebuild the file: ${REBUILD}`));
    return report(findings);
  }
  assertCertificateCount(blocks.filter((b) => CERT_LABELS.has(b.label)).length);
  findings.push(...lintBlocks(blocks, options));
  return report(findings);
}

function report(findings: Finding[]): LintReport {
  return { ok: !findings.some((f) => f.severity === 'error'), findings };
}

/** Byte-level problems: line endings, stray bytes, blank lines, text between blocks. */
export function lintText(raw: string): Finding[] {
  const out: Finding[] = [];
  if (raw.includes('\r')) {
    out.push(finding('CRLF', 'the file has CR/LF (Windows) line endings', "sed -i 's/\\r$//' bundle.pem   (or: dos2unix bundle.pem)"));
  }
  if (raw.includes('\x1a')) {
    out.push(finding('EOF_MARKER', 'the file holds 0x1A (Ctrl-Z) bytes, as left by Windows `copy /b`', "tr -d '\\032' < bundle.pem > fixed.pem"));
  } else if (/[^\x09\x0a\x0d\x20-\x7e]/.test(raw)) {
    out.push(finding('EOF_MARKER', 'the file holds stray control or non-ASCII bytes', "LC_ALL=C tr -cd '\\11\\12\\15\\40-\\176' < bundle.pem > fixed.pem"));
  }
  const lines = raw.replace(/[\r\x1a]/g, '').split('\n');
  if (lines.slice(0, lines.length - 1).some((line) => line.trim() === '')) {
    out.push(finding('BLANK_LINES', 'the file has blank lines', "sed -i '/^[[:space:]]*$/d' bundle.pem"));
  }
  const outside = textOutsidePem(lines);
  if (outside) {
    out.push(finding('TEXT_OUTSIDE_PEM', `text outside PEM blocks, e.g. "${outside}"`, `keep only the PEM blocks: ${REBUILD}`));
  }
  return out;
}

function textOutsidePem(lines: string[]): string | undefined {
  let inside = false;
  for (const line of lines) {
    const trimmed = line.trim();
    if (/^-----BEGIN [A-Z0-9 #]+-----$/.test(trimmed)) inside = true;
    else if (/^-----END [A-Z0-9 #]+-----$/.test(trimmed)) inside = false;
    else if (!inside && trimmed !== '') return trimmed.length > 60 ? `${trimmed.slice(0, 60)}…` : trimmed;
  }
  return undefined;
}

interface KeyInfo {
  block: PemBlock;
  encoding: KeyEncoding;
  key: KeyObject | undefined;
}

function lintBlocks(blocks: PemBlock[], options: LintOptions): Finding[] {
  const out: Finding[] = [];
  const certs: Certificate[] = [];
  const keys: KeyInfo[] = [];
  for (const block of blocks) {
    if (CERT_LABELS.has(block.label)) {
      try {
        certs.push(parseCertificate(block.der));
      } catch (err) {
        out.push(finding('CERT_UNREADABLE', `a certificate block cannot be parsed: ${(err as Error).message}`, 'get the certificate again from the CA; check it with: openssl x509 -noout -text -in cert.pem'));
      }
    } else if (isKeyLabel(block.label)) {
      keys.push(readKeyInfo(block, out));
    } else {
      out.push(finding('UNEXPECTED_BLOCK', `a "${block.label}" block does not belong in a MID bundle`, `keep only certificates and the key: ${REBUILD}`));
    }
  }
  out.push(...lintKeys(blocks, keys, certs));
  if (certs.length === 0) {
    out.push(finding('NO_CERTIFICATE', 'the file holds no certificate', REBUILD));
    return out;
  }
  const key = keys.length === 1 ? keys[0]?.key : undefined;
  out.push(...lintMaterial(certs, key, options));
  return out;
}

function readKeyInfo(block: PemBlock, out: Finding[]): KeyInfo {
  const encoding = keyBlockEncoding(block);
  if (encoding === 'encrypted-pkcs8' || encoding === 'encrypted-legacy') return { block, encoding, key: undefined };
  try {
    return { block, encoding, key: readKeyBlock(block).key };
  } catch (err) {
    out.push(finding('KEY_UNREADABLE', `the private key cannot be parsed: ${(err as Error).message}`, 'export the key again; check it with: openssl pkey -noout -in key.pem'));
    return { block, encoding, key: undefined };
  }
}

function lintKeys(blocks: PemBlock[], keys: KeyInfo[], certs: Certificate[]): Finding[] {
  const out: Finding[] = [];
  if (keys.length === 0) out.push(finding('KEY_MISSING', 'the file holds no private key; the MID import needs exactly one', REBUILD));
  if (keys.length > 1) out.push(finding('KEY_MULTIPLE', `the file holds ${keys.length} private keys; the MID import needs exactly one`, `keep only the leaf's key: ${REBUILD}`));
  for (const info of keys) {
    if (info.encoding === 'pkcs1' || info.encoding === 'sec1') {
      out.push(finding('KEY_NOT_PKCS8', `the key is ${info.encoding === 'pkcs1' ? 'PKCS#1 (BEGIN RSA PRIVATE KEY)' : 'SEC1 (BEGIN EC PRIVATE KEY)'}; the MID logs "Could not find valid private key"`,
        'openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem'));
    }
    if (info.encoding === 'encrypted-pkcs8' || info.encoding === 'encrypted-legacy') {
      out.push(finding('KEY_ENCRYPTED', 'the key is encrypted; the MID import needs an unencrypted PKCS#8 key',
        'openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem   (asks for the key password)'));
    }
    const described = info.key ? describeKey(info.key) : undefined;
    if (described?.type === 'RSA' && described.bits < 2048) {
      out.push(finding('KEY_WEAK', `the RSA key has ${described.bits} bits; at least 2048 are needed`, 'make a new key and CSR: midcert-agent csr --subject "CN=..." --bits 2048 --key-out key.pem --csr-out req.csr'));
    }
  }
  const lastCert = Math.max(-1, ...blocks.filter((b) => CERT_LABELS.has(b.label)).map((b) => b.start));
  if (keys.some((k) => k.block.start < lastCert)) {
    out.push(finding('KEY_NOT_LAST', 'the private key is not the last block; the expected order is leaf, intermediates, root, key', REBUILD));
  }
  const key = keys.length === 1 ? keys[0]?.key : undefined;
  if (key && certs.length > 0 && !certs.some((c) => publicKeysEqual(c.publicKey, key))) {
    out.push(finding('KEY_MISMATCH', 'the private key does not belong to any certificate in the file',
      'find the key the CSR was made with; compare: openssl x509 -noout -pubkey -in leaf.pem; openssl pkey -pubout -in key.pem'));
  }
  return out;
}

/**
 * Chain, leaf and validity checks on certificates in file order (and the key, when readable).
 * Also used on keystore entries, where there is no file text to check.
 */
export function lintMaterial(certs: Certificate[], key: KeyObject | undefined, options: LintOptions = {}): Finding[] {
  const built = buildChain(certs, key);
  return [
    ...lintChain(certs, built),
    ...lintLeaf(built),
    ...lintKeyType(built),
    ...lintValidity(built, options),
  ];
}

/** A stable label for a key: rsa-<bits>, ec-p256 / ec-p384 / ec-p521, ed25519, ... (agent config install.allowKeyTypes uses these). */
export function keyTypeLabel(key: KeyObject): string {
  const d = describeKey(key);
  if (d.type === 'RSA') return `rsa-${d.bits}`;
  if (d.type === 'EC') return `ec-${(d.curve ?? 'unknown').toLowerCase().replace(/-/g, '')}`;
  return d.type.toLowerCase();
}

/**
 * KEY_TYPE_UNVERIFIED: the leaf key is not RSA 2048. The vendor's only key-generation command is
 * `openssl req -newkey rsa:2048 …` and its sample bundle key is RSA 2048
 * (SND:servicenow-platform/mid-server/mid-unified-keystore.md); the documents are silent on EC and
 * on RSA 3072/4096, and the MID checks keys with `openssl rsa` (install-mid-mutual-auth.md).
 * RSA under 2048 bits is KEY_WEAK instead (an error).
 */
function lintKeyType(built: BuiltChain): Finding[] {
  const leaf = built.chain[0];
  if (!leaf) return [];
  const d = describeKey(leaf.publicKey);
  if (d.type === 'RSA' && d.bits <= 2048) return [];
  const label = keyTypeLabel(leaf.publicKey);
  return [finding('KEY_TYPE_UNVERIFIED',
    `the leaf key is ${label}; ServiceNow documents only RSA 2048 keys for MID mutual authentication, so the MID or the instance may refuse it`,
    `use an RSA 2048 key (midcert-agent csr --key-type rsa --bits 2048 …); or accept it knowingly: agent config install.allowKeyTypes: ["${label}"], midcert-agent install --allow-key-type ${label}`)];
}

function lintChain(certs: Certificate[], built: BuiltChain): Finding[] {
  const out: Finding[] = [];
  for (const dup of built.duplicates) {
    out.push(finding('DUPLICATE_CERT', `"${dup.subjectText}" appears more than once`, REBUILD));
  }
  const fileOrder = certs.filter((c, i) => certs.findIndex((o) => o.sha256 === c.sha256) === i);
  const inChain = fileOrder.filter((c) => built.chain.includes(c));
  if (inChain.some((c, i) => c !== built.chain[i])) {
    out.push(finding('CHAIN_ORDER', `certificates are not in leaf → intermediates → root order (the leaf is "${built.chain[0]?.subjectText}")`,
      'midcert-agent bundle build --cert bundle.pem --key bundle.pem -o fixed.pem   (reorders)'));
  }
  const gap = built.gap;
  if (gap?.kind === 'bad-signature') {
    out.push(finding('CHAIN_BROKEN', `"${gap.cert.subjectText}" names "${gap.cert.issuerText}" as issuer, but that certificate's key did not sign it`,
      'get the issuing CA certificate that actually signed it (ADCS: /certsrv/certnew.p7b?ReqID=CACert&Renewal=N&Enc=bin)'));
  } else if (gap && built.unused.some((c) => c.basicConstraints?.ca)) {
    out.push(finding('CHAIN_BROKEN', `no certificate in the file issued "${gap.cert.subjectText}" (issuer "${gap.cert.issuerText}"); the CA certificates present belong to another chain`,
      'replace the CA certificates with the chain of the CA that issued the leaf'));
  } else if (gap) {
    out.push(finding('CHAIN_INCOMPLETE', `the chain stops at "${gap.cert.subjectText}": its issuer "${gap.cert.issuerText}" is missing, so it does not end in a self-signed root`,
      `add the missing CA certificates: ${REBUILD.replace('--chain chain.pem', '--chain issuing-ca.pem --chain root-ca.pem')}`));
  }
  for (const extra of built.unused) {
    if (!(gap && extra.basicConstraints?.ca)) {
      out.push(finding('UNRELATED_CERT', `"${extra.subjectText}" is not part of the leaf's chain`, REBUILD));
    }
  }
  for (const issuer of built.chain.slice(1)) {
    if (!issuer.basicConstraints?.ca) {
      out.push(finding('CA_FLAG_MISSING', `"${issuer.subjectText}" issues a certificate in the chain but lacks basicConstraints CA:TRUE`,
        'use the proper CA certificate from the CA (check: openssl x509 -noout -ext basicConstraints -in ca.pem)'));
    }
  }
  return out;
}

function lintLeaf(built: BuiltChain): Finding[] {
  const leaf = built.chain[0];
  if (!leaf) return [];
  const out: Finding[] = [];
  const request = 'midcert-agent csr --subject "CN=<mid name>,O=<org>" --key-out key.pem --csr-out req.csr, then have the CA sign it with a client-authentication template';
  if (leaf.selfSigned) out.push(finding('LEAF_SELF_SIGNED', `the leaf "${leaf.subjectText}" is self-signed; the instance trusts only CA-issued client certificates`, request));
  else if (leaf.basicConstraints?.ca) out.push(finding('LEAF_IS_CA', `the leaf "${leaf.subjectText}" is a CA certificate`, request));
  const eku = leaf.extKeyUsage;
  if (!eku || !(eku.includes('clientAuth') || eku.includes('anyExtendedKeyUsage'))) {
    out.push(finding('EKU_CLIENT_AUTH_MISSING', `the leaf "${leaf.subjectText}" lacks extended key usage Client Authentication (clientAuth)`,
      `${request} (ADCS: a template with Client Authentication; check: openssl x509 -noout -ext extendedKeyUsage -in leaf.pem)`));
  }
  if (!leaf.keyUsage || !leaf.keyUsage.includes('digitalSignature')) {
    out.push(finding('KEY_USAGE_MISSING', `the leaf "${leaf.subjectText}" lacks key usage digitalSignature`,
      `${request} (check: openssl x509 -noout -ext keyUsage -in leaf.pem)`));
  }
  if (/sha1|md5/i.test(leaf.signatureAlgorithm)) {
    out.push(finding('WEAK_SIGNATURE', `the leaf "${leaf.subjectText}" is signed with SHA-1 or MD5`, 'have the CA issue a SHA-256 certificate'));
  }
  return out;
}

function lintValidity(built: BuiltChain, options: LintOptions): Finding[] {
  const now = options.now ?? new Date();
  const expiringDays = options.expiringDays ?? 30;
  const out: Finding[] = [];
  built.chain.forEach((cert, index) => {
    const role = index === 0 ? 'leaf' : cert.selfSigned ? 'root' : 'intermediate';
    if (cert.notAfter < now) {
      out.push(finding('CERT_EXPIRED', `the ${role} "${cert.subjectText}" expired on ${cert.notAfter.toISOString()}`,
        index === 0 ? 'renew it: midcert rotate --agent <name>, or a new CSR signed by the CA' : 'get the renewed CA certificate from the CA'));
    } else if (cert.notBefore > now) {
      out.push(finding('CERT_NOT_YET_VALID', `the ${role} "${cert.subjectText}" is valid only from ${cert.notBefore.toISOString()}`,
        'check the clock on this host and on the CA (date -u); or wait until it is valid'));
    } else if (index === 0 && cert.notAfter.getTime() - now.getTime() < expiringDays * 86_400_000) {
      const days = Math.floor((cert.notAfter.getTime() - now.getTime()) / 86_400_000);
      out.push(finding('CERT_EXPIRING', `the leaf "${cert.subjectText}" expires in ${days} days (${cert.notAfter.toISOString()})`,
        'renew it now: midcert rotate --agent <name>'));
    }
  });
  return out;
}
