/**
 * Disposition messages and status texts as ADCS words them. Clients scrape these (e.g.
 * `The disposition message is "([^"]+)`, `Taken Under Submission`, `Denied by`), so none of them
 * may contain a double quote. HRESULT names and values are the public winerror.h ones.
 */
export const DISPOSITION = {
  issued: 'Issued',
  pending: 'Taken Under Submission',
  deniedByPolicy: 'Denied by Policy Module',
  noTemplate: 'The request contains no certificate template information. 0x80094801 (-2146875391 CERTSRV_E_NO_CERT_TYPE)',
  templateDenied:
    'Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow the current user to enroll for this type of certificate.',
  badAsn1: 'Error Parsing Request  ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)',
  badSignature: 'Error Verifying Request Signature or Signing Certificate  The signature is invalid. 0x80090006 (-2146893818 NTE_BAD_SIGNATURE)',
  emptyRequest: 'Error Parsing Request  ASN1 unexpected end of data. 0x80093102 (ASN: 258 CRYPT_E_ASN1_EOD)',
  badMode: 'Unsupported request mode. 0x80070057 (WIN32: 87 ERROR_INVALID_PARAMETER)',
  databaseFull: 'The CA database is full (simulator bound). 0x80070070 (WIN32: 112 ERROR_DISK_FULL)',
  emptyProperty: 'The requested property value is empty. 0x80094004 (-2146877436 CERTSRV_E_PROPERTY_EMPTY)',
} as const;

/** The officer the lab's CA console acts as when a request is denied through the admin handle. */
export const LAB_OFFICER = 'LAB\\certadmin';

export function unsupportedTemplate(name: string): string {
  return `Denied by Policy Module  0x80094800, The request was for a certificate template that is not supported by the Active Directory Certificate Services Policy: ${name}.`;
}

/** ADCS records a manual denial as "Denied by DOMAIN\officer"; a lab reason is appended. */
export function deniedByOfficer(reason?: string): string {
  const base = `Denied by ${LAB_OFFICER}`;
  if (!reason) return base;
  return /^Denied by /.test(reason) ? reason : `${base}: ${reason}`;
}

export const LAST_STATUS_OK = 'The operation completed successfully. 0x0 (WIN32: 0 ERROR_SUCCESS)';
export const LAST_STATUS_ADMIN_DENIED = 'The request was denied by a certificate manager or CA administrator. 0x80094014 (-2146877420 CERTSRV_E_ADMIN_DENIED_REQUEST)';

/** Text that may end up in a disposition: no quotes (they end the scraped value), no line breaks. */
export function dispositionSafe(text: string): string {
  return text.replace(/["\r\n\t]/g, ' ').slice(0, 512);
}
