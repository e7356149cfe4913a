import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A throw-away lab PKI made at test time with the real `openssl` and `keytool` (keys are never
 * committed): a root CA, an intermediate, and two client leaves (RSA-2048 and P-256) issued by
 * the intermediate. Files in `dir`: root.pem/.key, intermediate.pem/.key, leaf.pem/.key,
 * leaf-ec.pem/.key, chain.pem (intermediate then root), chain-reversed.pem (root then intermediate).
 */
export interface Lab {
  dir: string;
  path(name: string): string;
  read(name: string): Promise<Buffer>;
  /** Runs the tool in `dir`; resolves with stdout, rejects (with stderr in the message) on failure. */
  openssl(args: string[]): Promise<string>;
  keytool(args: string[]): Promise<string>;
  /** Like openssl() but returns stderr, where `openssl pkcs12 -info` reports the algorithms. */
  opensslStderr(args: string[]): Promise<string>;
  /** SHA-256 fingerprint of a PEM certificate file as openssl prints it, lower-case hex, no colons. */
  fingerprint(pemFile: string): Promise<string>;
  cleanup(): Promise<void>;
}

export const LEAF_SUBJECT = '/O=midcert lab/CN=mid01';
export const LEAF_EC_SUBJECT = '/O=midcert lab/CN=mid02';

const run = promisify(execFile);

const CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

export async function makeLab(): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-lab-'));
  const path = (name: string): string => join(dir, name);
  // Argument arrays only, never a shell string; cwd is the lab so relative names stay inside it.
  const options = { cwd: dir, maxBuffer: 16 << 20 };
  const openssl = async (args: string[]): Promise<string> => (await run('openssl', args, options)).stdout;
  // English output for the -list parser; a quick-start JIT keeps each JVM around 0.3 s.
  const keytool = async (args: string[]): Promise<string> =>
    (await run('keytool', ['-J-Duser.language=en', '-J-Duser.country=US', '-J-XX:TieredStopAtLevel=1', '-J-XX:+UseSerialGC', ...args], options)).stdout;
  const lab: Lab = {
    dir, path, openssl, keytool,
    opensslStderr: async (args) => (await run('openssl', args, options)).stderr,
    read: (name) => readFile(path(name)),
    fingerprint: async (pemFile) => {
      const out = await openssl(['x509', '-in', pemFile, '-noout', '-fingerprint', '-sha256']);
      return (out.split('=')[1] ?? '').trim().replace(/:/g, '').toLowerCase();
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  try {
    await writeFile(path('lab.cnf'), CONFIG);
    await openssl(['req', '-config', 'lab.cnf', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.pem',
      '-subj', '/O=midcert lab/CN=Lab Root CA', '-days', '30', '-sha256', '-extensions', 'v3_root']);
    await issue(lab, 'intermediate', ['rsa:2048'], '/O=midcert lab/CN=Lab Intermediate CA', 'root', 'v3_intermediate');
    await Promise.all([
      issue(lab, 'leaf', ['rsa:2048'], LEAF_SUBJECT, 'intermediate', 'v3_client'),
      issue(lab, 'leaf-ec', ['ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], LEAF_EC_SUBJECT, 'intermediate', 'v3_client'),
    ]);
    const [root, intermediate] = await Promise.all([lab.read('root.pem'), lab.read('intermediate.pem')]);
    await writeFile(path('chain.pem'), Buffer.concat([intermediate, root]));
    await writeFile(path('chain-reversed.pem'), Buffer.concat([root, intermediate]));
    return lab;
  } catch (err) {
    await lab.cleanup();
    throw err;
  }
}

async function issue(lab: Lab, name: string, newkey: string[], subject: string, issuer: string, extensions: string): Promise<void> {
  await lab.openssl(['req', '-config', 'lab.cnf', '-new', '-newkey', ...newkey, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  await lab.openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-set_serial', serial(),
    '-days', '30', '-sha256', '-extfile', 'lab.cnf', '-extensions', extensions, '-out', `${name}.pem`]);
}

function serial(): string {
  return `0x${Math.floor(Math.random() * 2 ** 48).toString(16).padStart(12, '0')}01`;
}

/** One entry of `keytool -list -v`: alias, entry type and the SHA-256 fingerprints in chain order. */
export interface KeytoolEntry {
  alias: string;
  kind: string;
  sha256: string[];
}

export async function keytoolList(lab: Lab, keystore: string, storepass: string): Promise<KeytoolEntry[]> {
  const out = await lab.keytool(['-list', '-v', '-keystore', keystore, '-storepass', storepass]);
  return out.split(/^Alias name: /m).slice(1).map((block) => ({
    alias: (block.split('\n')[0] ?? '').trim(),
    kind: /^Entry type: (\S+)/m.exec(block)?.[1] ?? '',
    sha256: [...block.matchAll(/^\s*SHA256: ([0-9A-F:]+)/gm)].map((m) => (m[1] as string).replace(/:/g, '').toLowerCase()),
  }));
}

/** Every prefix of `bytes` at `step` intervals plus the last few bytes: what a cut-off copy looks like. */
export function truncations(bytes: Buffer, step = 61): Buffer[] {
  const cuts = new Set<number>();
  for (let n = 0; n < bytes.length; n += step) cuts.add(n);
  for (let n = Math.max(0, bytes.length - 24); n < bytes.length; n++) cuts.add(n);
  return [...cuts].map((n) => bytes.subarray(0, n));
}

/** Deterministic pseudo-random bytes (xorshift32), so a failing fuzz case can be reproduced. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
