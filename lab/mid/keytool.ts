import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MidcertError } from '../../common/errors.js';

const execFileAsync = promisify(execFile);

/** Start-up flags that halve keytool's JVM start time; keytool's work is tiny. */
const FAST_JVM = ['-J-XX:TieredStopAtLevel=1', '-J-Xshare:auto'];

/**
 * Runs the real `keytool`, passing the store password through the environment (`:env`), never on
 * the command line where `ps` would show it.
 */
export async function keytool(args: string[], storepass: string, cwd?: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync('keytool', [...FAST_JVM, ...args], {
      cwd, env: { ...process.env, MIDCERT_KEYTOOL_PASS: storepass }, maxBuffer: 4 * 1024 * 1024, timeout: 60_000,
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const text = `${e.stdout ?? ''}${e.stderr ?? ''}`.split('\n').find((l) => /error/i.test(l)) ?? e.message.split('\n')[0];
    throw new MidcertError('INTERNAL', `keytool failed: ${text}`);
  }
}

const emptyStores = new Map<string, Promise<Buffer>>();

/**
 * An empty JKS keystore made by keytool (a key pair generated, then deleted). The bytes depend
 * only on the store password, so they are made once per password and process: creating hundreds
 * of MID hosts then costs one JVM start, not hundreds.
 */
export function emptyJks(storepass: string): Promise<Buffer> {
  let pending = emptyStores.get(storepass);
  if (!pending) {
    pending = makeEmptyJks(storepass);
    pending.catch(() => emptyStores.delete(storepass));
    emptyStores.set(storepass, pending);
  }
  return pending;
}

async function makeEmptyJks(storepass: string): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'midcert-jks-'));
  try {
    const path = join(dir, 'empty.jks');
    const store = ['-keystore', path, '-storepass:env', 'MIDCERT_KEYTOOL_PASS'];
    await keytool(['-genkeypair', '-alias', 'placeholder', '-keyalg', 'EC', '-groupname', 'secp256r1', '-dname', 'CN=placeholder',
      '-storetype', 'JKS', ...store, '-keypass:env', 'MIDCERT_KEYTOOL_PASS'], storepass);
    await keytool(['-delete', '-alias', 'placeholder', ...store], storepass);
    return await readFile(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** JKS files start with FEEDFEED; anything else keytool reads here is PKCS12. */
export function keystoreTypeOf(bytes: Buffer): 'JKS' | 'PKCS12' {
  return bytes.subarray(0, 4).toString('hex') === 'feedfeed' ? 'JKS' : 'PKCS12';
}

/**
 * The MID's own self-signed pair under `alias`, as it makes one on first start and after
 * `delete_mid_keypair` (vendor-facts §5, §6: "When the MID Server is created, it generates a keypair";
 * "Invalidating a MID Server … creates a new self-signed certificate"). RSA-2048, SHA-256, subject
 * with `DC=service-now` (what public automation detects the auto-generated certificate by). Any entry
 * under the alias is deleted first. The caller backs the keystore up before.
 */
export async function regenerateSelfSignedPair(keystorePath: string, storepass: string, alias: string, midName: string): Promise<void> {
  const bytes = await readFile(keystorePath).catch(() => undefined);
  const storetype = bytes ? keystoreTypeOf(bytes) : 'JKS';
  const store = ['-keystore', keystorePath, '-storepass:env', 'MIDCERT_KEYTOOL_PASS', '-storetype', storetype];
  if (bytes) {
    const listing = await keytool(['-list', ...store], storepass);
    if (new RegExp(`^${alias.replace(/[.]/g, '\\.')},`, 'im').test(listing.stdout)) await keytool(['-delete', '-alias', alias, ...store], storepass);
  }
  const cn = midName.replace(/[,+="\\<>;#]/g, '_');
  await keytool(['-genkeypair', '-alias', alias, '-keyalg', 'RSA', '-keysize', '2048', '-sigalg', 'SHA256withRSA', '-validity', '3650',
    '-dname', `CN=${cn}, OU=MID Server, DC=service-now`, ...store, '-keypass:env', 'MIDCERT_KEYTOOL_PASS'], storepass);
}
