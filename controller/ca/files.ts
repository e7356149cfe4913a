import { readFile } from 'node:fs/promises';
import { MidcertError, isMidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates, type Certificate } from '../../pki/certificate.js';
import { readPrivateKey, toPkcs8Pem } from '../../pki/keys.js';
import { toPem } from '../../pki/pem.js';
import { readSecretFile, type CaConfig } from '../config.js';

/**
 * The files a CA config points at (chainFile, caFile, client certificate and key, password).
 * Problems here are local misconfiguration, so they throw (CONFIG_UNREADABLE / CONFIG_INVALID)
 * and never mention file contents.
 */

async function readConfigFile(path: string, key: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new MidcertError('CONFIG_UNREADABLE', `ca.${key} ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (bytes.length > LIMITS.pemBytes) throw new MidcertError('CONFIG_INVALID', `ca.${key} ${path} is larger than ${LIMITS.pemBytes} bytes`);
  return bytes;
}

/** Certificates of ca.chainFile / ca.caFile: at least one, all parseable. */
export async function readCertificateFile(path: string, key: string): Promise<Certificate[]> {
  return certificatesIn(await readConfigFile(path, key), path, key);
}

function certificatesIn(bytes: Buffer, path: string, key: string): Certificate[] {
  let certs: Certificate[];
  try {
    certs = readCertificates(bytes);
  } catch (err) {
    throw new MidcertError('CONFIG_INVALID', `ca.${key} ${path} does not hold readable certificates${isMidcertError(err) ? `: ${err.message}` : ''}`);
  }
  if (certs.length === 0) throw new MidcertError('CONFIG_INVALID', `ca.${key} ${path} holds no certificate`);
  return certs;
}

/** TLS settings for talking to the CA's HTTPS endpoint. */
export interface TlsMaterial {
  /** PEM trust anchors (ca.caFile); undefined = system roots. */
  ca?: string;
  /** Client certificate authentication (ca.clientCertFile + ca.clientKeyFile). */
  cert?: string;
  key?: string;
}

export async function readTlsMaterial(cfg: CaConfig): Promise<TlsMaterial> {
  const tls: TlsMaterial = {};
  if (cfg.caFile) {
    tls.ca = asPem(await readCertificateFile(cfg.caFile, 'caFile'));
  }
  if (Boolean(cfg.clientCertFile) !== Boolean(cfg.clientKeyFile)) {
    throw new MidcertError('CONFIG_INVALID', 'ca.clientCertFile and ca.clientKeyFile go together: set both or neither');
  }
  if (cfg.clientCertFile && cfg.clientKeyFile) {
    const certs = await readCertificateFile(cfg.clientCertFile, 'clientCertFile');
    const keyBytes = await readConfigFile(cfg.clientKeyFile, 'clientKeyFile');
    try {
      tls.key = toPkcs8Pem(readPrivateKey(keyBytes).key);
    } catch (err) {
      // The key's own error names only its encoding, never its content.
      throw new MidcertError('CONFIG_INVALID', `ca.clientKeyFile ${cfg.clientKeyFile} is not a usable unencrypted private key${isMidcertError(err) ? ` (${err.code})` : ''}`);
    }
    tls.cert = asPem(certs);
  }
  return tls;
}

// Node's TLS options want PEM; the files may be DER or carry OpenSSL "Bag Attributes" text.
function asPem(certs: Certificate[]): string {
  return certs.map((c) => toPem('CERTIFICATE', c.der)).join('');
}

/** `Authorization: Basic …` from ca.username + ca.passwordFile, or undefined when not configured. */
export async function readBasicAuth(cfg: CaConfig): Promise<string | undefined> {
  if (!cfg.username && !cfg.passwordFile) return undefined;
  if (!cfg.username || !cfg.passwordFile) throw new MidcertError('CONFIG_INVALID', 'ca.username and ca.passwordFile go together: set both or neither');
  const password = await readSecretFile(cfg.passwordFile, 'ca.passwordFile');
  if (!password) throw new MidcertError('CONFIG_INVALID', `ca.passwordFile ${cfg.passwordFile} is empty`);
  return `Basic ${Buffer.from(`${cfg.username}:${password}`, 'utf8').toString('base64')}`;
}

export function requireKey<K extends keyof CaConfig>(cfg: CaConfig, key: K): NonNullable<CaConfig[K]> {
  const value = cfg[key];
  if (value === undefined || value === null) throw new MidcertError('CONFIG_INVALID', `ca.${String(key)} is required for ca.type ${cfg.type}`);
  return value as NonNullable<CaConfig[K]>;
}
