import { createHash, createPublicKey } from 'node:crypto';
import { access } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { printJson, usageError } from '../../common/cli.js';
import { MidcertError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/fs.js';
// The PKI modules (node-forge) load only when the command runs, so --help answers at once.

interface CsrOptions {
  subject: string;
  keyOut: string;
  csrOut: string;
  keyType: string;
  bits?: string;
  san: string[];
  force?: boolean;
  json?: boolean;
}

export function csrCommand(): Command {
  return new Command('csr')
    .description('make a new private key and a CSR for a MID client certificate (keyUsage digitalSignature+keyEncipherment, EKU clientAuth, SHA-256)')
    .requiredOption('--subject <dn>', 'subject as RFC 4514 "CN=mid01,O=Org,OU=ITOM" (most specific first) or OpenSSL "/O=Org/CN=mid01"')
    .requiredOption('--key-out <file>', 'where to write the new unencrypted PKCS#8 key (created 0600; never overwritten without --force)')
    .requiredOption('--csr-out <file>', 'where to write the PEM CSR')
    .addOption(new Option('--key-type <type>', 'key algorithm').choices(['rsa', 'ec']).default('rsa'))
    .option('--bits <n>', 'key size: RSA 2048 (default; what the MID expects), 3072, 4096; EC 256 (default) or 384')
    .option('--san <name>', 'subjectAltName, repeatable: DNS:host, IP:addr, email:addr, URI:uri', collect, [])
    .option('--force', 'overwrite an existing --key-out file')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Examples:
  midcert-agent csr --subject "CN=mid01,O=Acme,OU=ITOM" --key-out mid01.key --csr-out mid01.csr
  midcert-agent csr --subject "/O=Acme/CN=mid01" --key-type ec --san DNS:mid01.acme.example --key-out k.pem --csr-out r.csr
Check the CSR with: openssl req -in mid01.csr -noout -verify -text`)
    .action(runCsr);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function runCsr(options: CsrOptions): Promise<void> {
  const bits = options.bits === undefined ? undefined : parseBits(options.bits);
  const { describeKey, generateKey, keySpecFrom, toPkcs8Pem } = await import('../../pki/keys.js');
  const spec = keySpecFrom(options.keyType, bits);
  if (!options.force && (await exists(options.keyOut))) {
    throw new MidcertError('OUTPUT_FAILED', `${options.keyOut} exists; refusing to overwrite a private key (use --force)`);
  }
  // The key is made on libuv's thread pool while the main thread loads the CSR code (node-forge):
  // the import costs nothing on top of the key generation. A bad subject still fails before any
  // file is written (the abandoned key is only waited for, never used).
  const pending = generateKey(spec);
  pending.catch(() => undefined);
  const [{ buildCsr }, { parseSubject, formatName }] = await Promise.all([import('../../pki/csr.js'), import('../../pki/name.js')]);
  parseSubject(options.subject);
  const key = await pending;
  const csr = buildCsr(key, { subject: options.subject, sans: options.san });
  await write(options.keyOut, toPkcs8Pem(key), 0o600);
  // chmod is a no-op on Windows: there the key gets an owner + SYSTEM + Administrators ACL instead.
  if (process.platform === 'win32') await (await import('../windows/acl.js')).protectKeyFileOrRemove(options.keyOut);
  await write(options.csrOut, csr, 0o644);
  const described = describeKey(key);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const result = {
    keyOut: options.keyOut,
    csrOut: options.csrOut,
    subject: formatName(parseSubject(options.subject)),
    keyType: described.type,
    keyBits: described.bits,
    publicKeySha256: createHash('sha256').update(spki).digest('hex'),
  };
  if (options.json) printJson(result);
  else process.stdout.write(`key: ${result.keyOut} (${result.keyType} ${result.keyBits}, ${process.platform === 'win32' ? 'ACL owner + SYSTEM + Administrators' : 'mode 0600'})\ncsr: ${result.csrOut}\nsubject: ${result.subject}\n`);
}

function parseBits(text: string): number {
  if (!/^\d{3,4}$/.test(text)) throw usageError(`--bits must be a number, not "${text}"`);
  return Number(text);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function write(path: string, data: string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, data, { mode });
  } catch (err) {
    throw new MidcertError('OUTPUT_FAILED', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
