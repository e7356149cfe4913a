import type { KeyObject } from 'node:crypto';
import { Command } from 'commander';
import { EXIT, paint, printJson, readInput, resolvePassword, usageError, useColor } from '../../common/cli.js';
import { MidcertError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/fs.js';
import { LIMITS } from '../../common/limits.js';
import type { Certificate } from '../../pki/certificate.js';
import type { LintReport } from '../../pki/lint.js';
import type { Finding } from '../../pki/lint-codes.js';
// The PKI modules load only when a command runs, so --help answers at once.

interface BuildOptions {
  pfx?: string;
  pfxPassword?: string;
  pfxPasswordFile?: string;
  cert?: string;
  key?: string;
  keyPassword?: string;
  keyPasswordFile?: string;
  passwordFile?: string;
  chain: string[];
  output: string;
  expiringDays: string;
  json?: boolean;
}

export function bundleCommand(): Command {
  const bundle = new Command('bundle').description('build and check the PEM bundle the MID imports (leaf, intermediates, root, PKCS#8 key)');
  bundle.command('build')
    .description('build the exact bundle the MID needs from what the CA gave you (inputs in any order: PEM, DER, PKCS#7, PFX)')
    .option('--pfx <file>', 'a PKCS#12/PFX with key and certificates (legacy Windows RC2/3DES exports work too)')
    .option('--pfx-password <p>', 'PFX password (prefer --pfx-password-file or MIDCERT_PFX_PASSWORD)')
    .option('--pfx-password-file <file>', 'read the PFX password from a file')
    .option('--cert <file>', 'the leaf certificate (a file with several certificates is fine)')
    .option('--key <file>', 'the private key: PKCS#8, PKCS#1, SEC1 or encrypted PKCS#8, PEM or DER')
    .option('--key-password <p>', 'password of an encrypted key (prefer --key-password-file or MIDCERT_KEY_PASSWORD)')
    .option('--key-password-file <file>', 'read the key password from a file')
    .option('--password-file <file>', 'read the PFX or key password from a file (whichever applies)')
    .option('--chain <file>', 'CA certificates (PEM, DER or .p7b), repeatable, any order', collect, [])
    .requiredOption('-o, --output <file>', 'where to write the bundle (mode 0600: it holds the key)')
    .option('--expiring-days <n>', 'warn when the leaf has fewer days left', '30')
    .option('--json', 'print {"ok","output","chain":[…],"dropped":[…],"findings":[…]}')
    .addHelpText('after', `
Nothing is written unless the result lints clean of errors (see: midcert-agent bundle lint --help).
Environment: MIDCERT_PFX_PASSWORD, MIDCERT_KEY_PASSWORD, MIDCERT_PASSWORD.
Examples:
  midcert-agent bundle build --pfx mid01.pfx --pfx-password-file pw.txt -o mid01-bundle.pem
  midcert-agent bundle build --cert mid01.cer --key mid01.key --chain certnew.p7b -o mid01-bundle.pem`)
    .action(runBuild);
  bundle.command('lint')
    .description('check a bundle the way the MID import will, with a stable code and a fix for each problem')
    .argument('<file>', 'the bundle to check')
    .option('--expiring-days <n>', 'warn when the leaf has fewer days left', '30')
    .option('--json', 'print {"ok": bool, "findings": [{"code","severity","message","fix"}]}')
    .addHelpText('after', '\nExit status: 0 when no finding has severity "error", 1 otherwise (2-4 as for every command).')
    .action(runLint);
  return bundle;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function runBuild(options: BuildOptions): Promise<void> {
  const { certificates, key } = await gatherInputs(options);
  const expiringDays = parseDays(options.expiringDays);
  const [{ BundleInvalidError, buildBundle }, { summarize }] = await Promise.all([import('../../pki/bundle.js'), import('../../pki/certificate.js')]);
  try {
    const built = buildBundle(certificates, key, { expiringDays });
    await writeOutput(options.output, built.pem);
    const result = { ok: true, output: options.output, chain: built.chain.map(summarize), dropped: built.dropped.map(summarize), findings: built.report.findings };
    if (options.json) printJson(result);
    else printBuild(result.output, built.chain, built.dropped, built.report.findings);
  } catch (err) {
    if (err instanceof BundleInvalidError && options.json) {
      printJson({ ok: false, output: null, error: { code: err.code, message: err.message }, findings: err.findings });
    } else if (err instanceof BundleInvalidError) {
      process.stdout.write(formatFindings(err.findings));
    }
    throw err;
  }
}

async function gatherInputs(options: BuildOptions): Promise<{ certificates: Certificate[]; key: KeyObject }> {
  if (options.pfx && (options.cert || options.key)) throw usageError('give either --pfx, or --cert and --key, not both');
  if (options.pfx) return fromPfx(options);
  if (!options.cert || !options.key) throw usageError('give --pfx, or both --cert and --key');
  const password = await resolvePassword({ file: options.keyPasswordFile ?? options.passwordFile, value: options.keyPassword, env: ['MIDCERT_KEY_PASSWORD', 'MIDCERT_PASSWORD'] });
  const [{ readPrivateKey }, { readCertificates }] = await Promise.all([import('../../pki/keys.js'), import('../../pki/certificate.js')]);
  const key = readPrivateKey(await readInput(options.key, LIMITS.pemBytes, 'key file'), password).key;
  const certificates = [...readCertificates(await readInput(options.cert, LIMITS.pemBytes, 'certificate file')), ...(await readChain(options.chain))];
  return { certificates, key };
}

async function fromPfx(options: BuildOptions): Promise<{ certificates: Certificate[]; key: KeyObject }> {
  const password = await resolvePassword({ file: options.pfxPasswordFile ?? options.passwordFile, value: options.pfxPassword, env: ['MIDCERT_PFX_PASSWORD', 'MIDCERT_PASSWORD'] });
  const { readPkcs12 } = await import('../../pki/pkcs12.js');
  const contents = readPkcs12(await readInput(options.pfx as string, LIMITS.pfxBytes, 'PFX file'), password ?? '');
  const key = contents.keys[0]?.key;
  if (!key) throw new MidcertError('PKCS12_CONTENT', `${options.pfx} holds no private key`);
  if (contents.keys.length > 1) throw new MidcertError('PKCS12_CONTENT', `${options.pfx} holds ${contents.keys.length} private keys; expected one`);
  const certificates = [...contents.certificates.map((c) => c.cert), ...(await readChain(options.chain))];
  return { certificates, key };
}

async function readChain(files: string[]): Promise<Certificate[]> {
  const { readCertificates } = await import('../../pki/certificate.js');
  const out: Certificate[] = [];
  for (const file of files) out.push(...readCertificates(await readInput(file, LIMITS.pemBytes, 'chain file')));
  return out;
}

async function writeOutput(path: string, pem: string): Promise<void> {
  try {
    await writeFileAtomic(path, pem, { mode: 0o600 });
    // The bundle holds the key; chmod is a no-op on Windows, so there it gets a protected ACL.
    if (process.platform === 'win32') await (await import('../windows/acl.js')).protectKeyFileOrRemove(path);
  } catch (err) {
    throw new MidcertError('OUTPUT_FAILED', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function printBuild(output: string, chain: Certificate[], dropped: Certificate[], findings: Finding[]): void {
  const lines = [`wrote ${output} (${process.platform === 'win32' ? 'ACL owner + SYSTEM + Administrators' : 'mode 0600'})`];
  chain.forEach((cert, i) => lines.push(`  ${i === 0 ? 'leaf' : cert.selfSigned ? 'root' : 'intermediate'}: ${cert.subjectText} (expires ${cert.notAfter.toISOString()})`));
  lines.push('  key: PKCS#8, last');
  for (const cert of dropped) lines.push(`  left out (not on the leaf's chain): ${cert.subjectText}`);
  process.stdout.write(`${lines.join('\n')}\n${formatFindings(findings)}`);
}

async function runLint(file: string, options: { json?: boolean; expiringDays: string }): Promise<void> {
  const { lintBundle } = await import('../../pki/lint.js');
  const report: LintReport = lintBundle(await readInput(file, LIMITS.pemBytes, 'bundle'), { expiringDays: parseDays(options.expiringDays) });
  if (options.json) printJson(report);
  else process.stdout.write(formatLint(file, report));
  if (!report.ok) process.exitCode = EXIT.findings;
}

function parseDays(text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw usageError(`--expiring-days must be a whole number of days, not "${text}"`);
  return Number(text);
}

function formatLint(file: string, report: LintReport): string {
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const warnings = report.findings.length - errors;
  const head = report.findings.length === 0 ? `${file}: OK — ready for manage-certificates -a` : `${file}: ${errors} error(s), ${warnings} warning(s)`;
  return `${head}\n${formatFindings(report.findings)}`;
}

function formatFindings(findings: Finding[]): string {
  const color = useColor();
  return findings.map((f) => `  ${paint(f.severity.padEnd(7), f.severity === 'error' ? 'red' : 'yellow', color)} ${f.code}: ${f.message}\n          fix: ${f.fix}\n`).join('');
}
