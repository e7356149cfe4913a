import { toPem } from '../../pki/pem.js';

/**
 * The byte shapes certsrv hands out. Built by hand so certificates are embedded byte-for-byte
 * (re-encoding through an ASN.1 library could alter them).
 */

const OID_SIGNED_DATA = Buffer.from('06092a864886f70d010702', 'hex');
const OID_DATA = Buffer.from('06092a864886f70d010701', 'hex');

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else if (n < 0x100) header = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) header = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else header = Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([header, content]);
}

/**
 * A degenerate PKCS#7 SignedData ("certs-only", RFC 2315 §9.1 / RFC 5652 §5): version 1, no
 * digest algorithms, empty data content, the certificates, no signers.
 */
export function certsOnlyPkcs7(certDers: Buffer[]): Buffer {
  const signedData = tlv(0x30, Buffer.concat([
    Buffer.from([0x02, 0x01, 0x01]), // version 1
    Buffer.from([0x31, 0x00]), // digestAlgorithms: empty SET
    tlv(0x30, OID_DATA), // contentInfo: data, no content
    tlv(0xa0, Buffer.concat(certDers)), // [0] IMPLICIT certificates
    Buffer.from([0x31, 0x00]), // signerInfos: empty SET
  ]));
  return tlv(0x30, Buffer.concat([OID_SIGNED_DATA, tlv(0xa0, signedData)]));
}

/**
 * Base64 as certsrv's Enc=b64 returns it: CRLF line endings, and the label is CERTIFICATE even
 * when the content is a PKCS#7 (Microsoft CAs label their Base64 .p7b that way).
 */
export function windowsPem(der: Buffer): string {
  return toPem('CERTIFICATE', der).replace(/\n/g, '\r\n');
}
