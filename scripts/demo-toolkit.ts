/**
 * `make demo`: the PKI toolkit end to end on a lab PKI made on the spot, the way an administrator
 * prepares a MID certificate by hand — key + CSR → signed by a (lab) CA → bundle → lint →
 * keystore via keytool (as manage-certificates does) → keystore show. Prints each step.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLabCa, saveLabCa } from '../lab/lab-ca.js';

const exec = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), process.argv[1]?.includes('/dist/') ? '../..' : '..');
const agent = join(root, 'bin', 'midcert-agent');
const work = resolve(process.env.MIDCERT_DEMO_DIR ?? join(root, '.lab', 'demo'));

function step(title: string): void {
  process.stdout.write(`\n\x1b[1m▶ ${title}\x1b[0m\n`);
}

async function show(file: string, args: string[], options: { allowFail?: boolean } = {}): Promise<string> {
  process.stdout.write(`$ ${[file.replace(`${root}/`, ''), ...args].join(' ')}\n`);
  try {
    const { stdout, stderr } = await exec(file, args, { cwd: work });
    process.stdout.write(stdout + stderr);
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    process.stdout.write(`${e.stdout ?? ''}${e.stderr ?? ''}`);
    if (!options.allowFail) throw err;
    process.stdout.write(`(exit ${e.code})\n`);
    return e.stdout ?? '';
  }
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, 'agent', 'security'), { recursive: true });
  process.stdout.write(`midcert demo — working in ${work}\n`);

  step('1. A lab CA (root → issuing intermediate) stands in for the company CA');
  const ca = await createLabCa('Demo');
  await saveLabCa(ca, join(work, 'ca'));
  // Deliver the chain root-first, as CAs often do, to show that order does not matter.
  await writeFile(join(work, 'ca-chain-root-first.pem'), ca.root.certPem + ca.intermediate.certPem);
  process.stdout.write(`root:         ${ca.root.cert.subjectText}\nintermediate: ${ca.intermediate.cert.subjectText}\n`);

  step('2. Key and CSR on the MID host (the key never leaves it)');
  await show(agent, ['csr', '--subject', 'CN=mid01,O=Acme,OU=ITOM', '--san', 'DNS:mid01.acme.example', '--key-out', 'mid01.key', '--csr-out', 'mid01.csr']);
  await show('openssl', ['req', '-in', 'mid01.csr', '-noout', '-verify', '-subject']);

  step('3. The CA signs the CSR (client-authentication profile)');
  await writeFile(join(work, 'mid01.pem'), ca.signCsr(await readFile(join(work, 'mid01.csr')), { days: 365 }));
  await show(agent, ['cert', 'show', 'mid01.pem']);

  step('4. Build the bundle the MID imports: leaf, intermediate, root, PKCS#8 key');
  await show(agent, ['bundle', 'build', '--cert', 'mid01.pem', '--key', 'mid01.key', '--chain', 'ca-chain-root-first.pem', '-o', 'mid01-bundle.pem']);

  step('5. Lint it — and see what the linter says about a typical broken one');
  await show(agent, ['bundle', 'lint', 'mid01-bundle.pem']);
  const broken = (await readFile(join(work, 'mid01-bundle.pem'), 'utf8')).replace(/\n/g, '\r\n');
  await writeFile(join(work, 'broken-bundle.pem'), `${broken}\x1a`);
  await show(agent, ['bundle', 'lint', 'broken-bundle.pem'], { allowFail: true });

  step('6. Import into a JKS keystore with keytool, the way manage-certificates -a ends up');
  await show('openssl', ['pkcs12', '-export', '-in', 'mid01-bundle.pem', '-name', 'defaultsecuritykeypairhandle', '-out', 'mid01.p12', '-passout', 'pass:changeit']);
  await show('keytool', ['-importkeystore', '-noprompt', '-srckeystore', 'mid01.p12', '-srcstoretype', 'PKCS12', '-srcstorepass', 'changeit',
    '-destkeystore', 'agent/security/agent_keystore', '-deststoretype', 'JKS', '-deststorepass', 'changeit', '-destkeypass', 'changeit']);

  step('7. Read the keystore back');
  await show(agent, ['keystore', 'show', '--keystore', 'agent/security/agent_keystore']);

  process.stdout.write(`\n\x1b[1m✔ demo complete\x1b[0m — files are in ${work}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
