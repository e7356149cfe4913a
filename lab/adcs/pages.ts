/**
 * The HTML certsrv answers with. Only the markers clients scrape are load-bearing (listed in
 * docs/lab/adcs.md); the rest keeps the pages recognisable. Lines end in CRLF like the real
 * ASP pages, and every interpolated value is HTML-escaped.
 */
const TITLE = 'Microsoft Active Directory Certificate Services';

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(caName: string, heading: string, body: string[]): string {
  return [
    '<HTML>',
    '<Head>',
    '\t<Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-8">',
    `\t<Title>${TITLE}</Title>`,
    '</Head>',
    '<Body BgColor=#FFFFFF Link=#0000FF VLink=#0000FF ALink=#0000FF><Font ID=locPageFont Face="Arial">',
    `<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080><TR><TD><Font Color=#FFFFFF><I>${TITLE}</I>`,
    `&nbsp;--&nbsp; ${escapeHtml(caName)}</Font></TD>`,
    '<TD ID=locHomeLink Align=Right><A Href="/certsrv"><Font Color=#FFFFFF>Home</Font></A></TD></TR></Table>',
    `<P ID=locPageTitle> <B> ${heading} </B>`,
    ...body,
    '</Font>',
    '</Body>',
    '</HTML>',
    '',
  ].join('\r\n');
}

export function homePage(caName: string): string {
  return page(caName, 'Welcome', [
    '<P>Use this Web site to request a certificate for your Web browser, e-mail client, or other program.',
    '<P><B>Select a task:</B><BR>',
    '&nbsp;&nbsp;&nbsp;&nbsp;<A Href="certrqus.asp">Request a certificate</A><BR>',
    '&nbsp;&nbsp;&nbsp;&nbsp;<A Href="certckpn.asp">View the status of a pending certificate request</A><BR>',
    '&nbsp;&nbsp;&nbsp;&nbsp;<A Href="certcarc.asp">Download a CA certificate, certificate chain, or CRL</A><BR>',
  ]);
}

/** certfnsh.asp, issued: clients take the request id from `certnew.cer?ReqID=(\d+)&`. */
export function issuedPage(caName: string, reqId: number): string {
  return page(caName, 'Certificate Issued', [
    '<P ID=locInfoCertIssued>The certificate you requested was issued to you.',
    '<P>',
    '\t<Input Type=Radio Name=rbEncoding ID=rbDerEnc Checked><Label For=rbDerEnc ID=locDerEnc>DER encoded</Label> or',
    '\t<Input Type=Radio Name=rbEncoding ID=rbB64Enc><Label For=rbB64Enc ID=locB64Enc>Base 64 encoded</Label>',
    '<P>',
    `\t<A Href="certnew.cer?ReqID=${reqId}&amp;Enc=bin"><LocID ID=locDownloadCert>Download certificate</LocID></A><BR>`,
    `\t<A Href="certnew.p7b?ReqID=${reqId}&amp;Enc=bin"><LocID ID=locDownloadChain>Download certificate chain</LocID></A>`,
    '<Script Language="JavaScript">',
    `\tvar sCertUrl="certnew.cer?ReqID=${reqId}&Enc=b64";`,
    `\tvar sChainUrl="certnew.p7b?ReqID=${reqId}&Enc=b64";`,
    '</Script>',
  ]);
}

/** certfnsh.asp, pending: "Certificate Pending" and "Your Request Id is N." */
export function pendingPage(caName: string, reqId: number): string {
  return page(caName, 'Certificate Pending', [
    '<P ID=locInfoPending>Your certificate request has been received. However, you must wait for an administrator to issue the certificate you requested.',
    `<P ID=locReqIdMsg>Your Request Id is ${reqId}.`,
    '<P ID=locReturnMsg>Please return to this web site in a day or two to retrieve your certificate.',
    '<P ID=locNoteMsg><Font Size=-1><I>Note: You must return with this web browser within 10 days to retrieve your certificate</I></Font>',
  ]);
}

/** certfnsh.asp, denied by policy: `The disposition message is "<text>".` */
export function deniedPage(caName: string, disposition: string): string {
  return page(caName, 'Certificate Request Denied', [
    '<P ID=locInfoDenied>Your certificate request was denied.',
    '<P ID=locContactAdmin>Contact your administrator for further information.',
    `<P>The disposition message is "${escapeHtml(disposition)}".`,
  ]);
}

/** certfnsh.asp, the request could not be processed (bad CSR, no template, bad mode…). */
export function errorPage(caName: string, disposition: string, mode: string): string {
  return page(caName, 'Error', [
    '<P ID=locInfoError>An unexpected error has occurred:',
    `<P>The disposition message is "${escapeHtml(disposition)}".`,
    '<!-- Advanced info -->',
    '<DL><DD>',
    '\t<DT ID=locModeLabel><Font Size=-1><B>Request Mode:</B></Font></DT><DD>',
    `\t\t${escapeHtml(mode)}`,
    '\t</DD>',
    '</DL>',
  ]);
}

/**
 * certnew.cer when there is no certificate to hand out. Clients scrape
 * `Disposition message:[^\t]+\t\t([^\r\n]+)` and `LastStatus:[^\t]+\t\t([^\r\n]+)`, then look for
 * "Taken Under Submission" (pending) or "Denied by" (denied) anywhere in the page.
 */
export function retrievalPage(caName: string, heading: string, disposition: string, lastStatus: string): string {
  return page(caName, heading, [
    '<P ID=locInfoRetrieve>The certificate could not be retrieved.',
    '<!-- Advanced info -->',
    '<Table Border=0>',
    '<TR><TD ID=locDispMsgLabel><Font Size=-1><B>Disposition message:</B></Font></TD>',
    '<TD>',
    `\t\t${escapeHtml(disposition)}`,
    '</TD></TR>',
    '<TR><TD ID=locLastStatusLabel><Font Size=-1><B>LastStatus:</B></Font></TD>',
    '<TD>',
    `\t\t${escapeHtml(lastStatus)}`,
    '</TD></TR>',
    '</Table>',
  ]);
}

/** certcarc.asp: clients read `var nRenewals=(\d+);` to ask for the newest CA certificate. */
export function certcarcPage(caName: string, nRenewals: number): string {
  const options = Array.from({ length: nRenewals + 1 }, (_, i) => `\t<Option Value="${i}"${i === nRenewals ? ' Selected' : ''}>Current [${escapeHtml(caName)}]${i > 0 ? ` (${i})` : ''}`);
  return page(caName, 'Download a CA certificate, certificate chain, or CRL', [
    '<P ID=locInfoTrust>To trust certificates issued from this certification authority, install this CA certificate.',
    '<P><Select Name=lbCaInstance ID=lbCaInstance Size=2>',
    ...options,
    '</Select>',
    '<Script Language="JavaScript">',
    `\tvar nRenewals=${nRenewals};`,
    '\tvar sCaCertUrl="certnew.cer?ReqID=CACert&Renewal="+nRenewals+"&Enc=bin";',
    '\tvar sChainUrl="certnew.p7b?ReqID=CACert&Renewal="+nRenewals+"&Enc=bin";',
    '</Script>',
  ]);
}

/** IIS's own error pages (401, 403.16, 404, 413…): plain, without the certsrv frame. */
export function iisErrorPage(status: string, detail: string): string {
  return [
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
    '<html xmlns="http://www.w3.org/1999/xhtml">',
    '<head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>',
    `<title>${escapeHtml(status)}</title></head>`,
    '<body><div id="header"><h1>Server Error</h1></div>',
    `<div id="content"><div class="content-container"><fieldset><h2>${escapeHtml(status)}</h2>`,
    `<h3>${escapeHtml(detail)}</h3></fieldset></div></div>`,
    '</body></html>',
    '',
  ].join('\r\n');
}
