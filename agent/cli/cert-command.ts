import { Command } from 'commander';
import { printJson, readInput } from '../../common/cli.js';
import { MidcertError } from '../../common/errors.js';
import type { Certificate } from '../../pki/certificate.js';

export function certCommand(): Command {
  const cert = new Command('cert').description('inspect certificates');
  cert.command('show')
    .description('show every certificate in a PEM, DER or PKCS#7 file')
    .argument('<file>', 'certificate file (PEM with one or more certificates, DER, or PKCS#7 .p7b)')
    .option('--json', 'print {"certificates":[{subject, issuer, serial, notBefore, notAfter, sha256, ...}]}')
    .action(async (file: string, options: { json?: boolean }) => {
      const { daysLeft, readCertificates, summarize } = await import('../../pki/certificate.js');
      const certs = readCertificates(await readInput(file));
      if (certs.length === 0) throw new MidcertError('CERT_MALFORMED', `${file} holds no certificate`);
      const now = new Date();
      if (options.json) printJson({ certificates: certs.map((c) => ({ ...summarize(c), signatureAlgorithm: c.signatureAlgorithm, daysLeft: daysLeft(c, now) })) });
      else process.stdout.write(certs.map((c, i) => describe(c, i, now, { daysLeft, summarize })).join('\n'));
    });
  return cert;
}

type Pki = Pick<typeof import('../../pki/certificate.js'), 'daysLeft' | 'summarize'>;

export function describe(cert: Certificate, index: number, now: Date, { daysLeft, summarize }: Pki): string {
  const s = summarize(cert);
  const rows: [string, string][] = [
    ['subject', s.subject],
    ['issuer', s.issuer],
    ['serial', s.serial],
    ['valid', `${s.notBefore} → ${s.notAfter} (${daysLeft(cert, now)} days left)`],
    ['sha256', s.sha256],
    ['key', `${s.keyType} ${s.keyBits}`],
    ['signature', cert.signatureAlgorithm],
    ['keyUsage', s.keyUsage?.join(', ') ?? '(none)'],
    ['extKeyUsage', s.extKeyUsage?.join(', ') ?? '(none)'],
    ['basicConstraints', s.basicConstraints ? `CA:${s.basicConstraints.ca ? 'TRUE' : 'FALSE'}${s.basicConstraints.pathLen !== undefined ? `, pathlen:${s.basicConstraints.pathLen}` : ''}` : '(none)'],
  ];
  if (s.subjectAltNames.length > 0) rows.push(['subjectAltName', s.subjectAltNames.join(', ')]);
  if (s.selfSigned) rows.push(['self-signed', 'yes']);
  return `certificate ${index + 1}\n${rows.map(([k, v]) => `  ${k.padEnd(17)} ${v}`).join('\n')}\n`;
}
