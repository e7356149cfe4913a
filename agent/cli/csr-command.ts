import { createHash, createPublicKey } from 'node:crypto';
import { access } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { printJson, usageError } from '../../common/cli.js';
import { MidcertError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/fs.js';
import { buildCsr } from '../../pki/csr.js';
import { describeKey, generateKey, keySpecFrom, toPkcs8Pem } from '../../pki/keys.js';
import { parseSubject, formatName } from '../../pki/name.js';

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
  const spec = keySpecFrom(options.keyType, bits);
  parseSubject(options.subject); // fail on a bad subject before spending time on a key
  if (!options.force && (await exists(options.keyOut))) {
    throw new MidcertError('OUTPUT_FAILED', `${options.keyOut} exists; refusing to overwrite a private key (use --force)`);
  }
  const key = await generateKey(spec);
  const csr = buildCsr(key, { subject: options.subject, sans: options.san });
  await write(options.keyOut, toPkcs8Pem(key), 0o600);
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
  else process.stdout.write(`key: ${result.keyOut} (${result.keyType} ${result.keyBits}, mode 0600)\ncsr: ${result.csrOut}\nsubject: ${result.subject}\n`);
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
