/**
 * What the certsrv pages say, read with the markers of DESIGN.md §4 and the public clients
 * (magnuswatn/certsrv, nokia/adcs-issuer). Pure functions over HTML text.
 */
const ISSUED_ID = /certnew\.cer\?ReqID=(\d+)&/i;
const PENDING_ID = /Your Request Id is (\d+)\./;
const SUBMIT_DISPOSITION = /The disposition message is "([^"]*)/;
const FETCH_DISPOSITION = /Disposition message:[^\t]+\t\t([^\r\n]+)/;
const LAST_STATUS = /LastStatus:[^\t]+\t\t([^\r\n]+)/;
const RENEWALS = /var nRenewals=(\d+);/;

/** certfnsh.asp's answer to a new request. */
export type SubmitPage =
  | { kind: 'issued'; requestId: number }
  | { kind: 'pending'; requestId: number }
  | { kind: 'refused'; disposition: string }
  | { kind: 'unknown' };

export function readSubmitPage(html: string): SubmitPage {
  const issued = ISSUED_ID.exec(html);
  if (issued) return { kind: 'issued', requestId: Number(issued[1]) };
  const pending = PENDING_ID.exec(html);
  if (pending && html.includes('Certificate Pending')) return { kind: 'pending', requestId: Number(pending[1]) };
  const refused = SUBMIT_DISPOSITION.exec(html);
  if (refused) return { kind: 'refused', disposition: decodeHtml(refused[1] as string).trim() };
  return { kind: 'unknown' };
}

/** certnew.cer's HTML answer when there is no certificate to hand out. */
export type RetrievalPage =
  | { kind: 'pending' }
  | { kind: 'denied'; disposition: string }
  | { kind: 'error'; disposition: string };

export function readRetrievalPage(html: string): RetrievalPage {
  if (html.includes('Taken Under Submission')) return { kind: 'pending' };
  const disposition = decodeHtml(FETCH_DISPOSITION.exec(html)?.[1] ?? LAST_STATUS.exec(html)?.[1] ?? '').trim();
  if (html.includes('Denied by')) return { kind: 'denied', disposition: disposition || 'Denied by the CA' };
  return { kind: 'error', disposition: disposition || 'the certificate could not be retrieved' };
}

/** certcarc.asp: the newest CA certificate renewal number. */
export function readRenewals(html: string): number | undefined {
  const match = RENEWALS.exec(html);
  return match ? Number(match[1]) : undefined;
}

/** The entities ASP's Server.HTMLEncode produces, and numeric ones. */
export function decodeHtml(text: string): string {
  return text
    .replace(/&#(\d{1,6});/g, (_, n: string) => safeChar(Number(n)))
    .replace(/&#x([0-9a-f]{1,6});/gi, (_, n: string) => safeChar(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&nbsp;/g, ' ').replace(/&amp;/g, '&');
}

function safeChar(code: number): string {
  return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
}
