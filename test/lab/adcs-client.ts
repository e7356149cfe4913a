import { execFile } from 'node:child_process';
import { request } from 'node:https';
import { promisify } from 'node:util';

/**
 * A deliberately plain certsrv client for the ADCS lab tests: raw HTTPS, the form fields and
 * regexes public clients use (magnuswatn/certsrv, adcs-issuer), nothing borrowed from the lab.
 */
export const BROWSER_UA = 'Mozilla/5.0 (midcert lab test)';
export const REQ_ID = /certnew.cer\?ReqID=(\d+)&/;
export const PENDING_ID = /Your Request Id is (\d+)\./;
export const SUBMIT_DISPOSITION = /The disposition message is "([^"]+)/;
export const FETCH_DISPOSITION = /Disposition message:[^\t]+\t\t([^\r\n]+)/;

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Every header line, repeated ones kept apart (Node joins most repeats with ", "). */
  distinct: NodeJS.Dict<string[]>;
  body: Buffer;
  text: string;
}

export interface CallOptions {
  method?: 'GET' | 'POST';
  body?: string | Buffer;
  contentType?: string;
  /** [user, password] for Basic, or a raw Authorization header value. */
  auth?: [string, string] | string;
  userAgent?: string | null;
  cert?: string;
  key?: string;
}

export function call(url: string, trustPem: string, options: CallOptions = {}): Promise<HttpAnswer> {
  const headers: Record<string, string | number> = {};
  if (options.userAgent !== null) headers['User-Agent'] = options.userAgent ?? BROWSER_UA;
  if (Array.isArray(options.auth)) headers.Authorization = `Basic ${Buffer.from(options.auth.join(':')).toString('base64')}`;
  else if (options.auth) headers.Authorization = options.auth;
  if (options.body !== undefined) {
    headers['Content-Type'] = options.contentType ?? 'application/x-www-form-urlencoded';
    headers['Content-Length'] = Buffer.byteLength(options.body);
  }
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers, ca: trustPem, cert: options.cert, key: options.key, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, distinct: res.headersDistinct, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The certfnsh.asp form exactly as public clients post it. */
export function submitForm(csr: string, template: string | null, extraAttribs = ''): string {
  return new URLSearchParams({
    Mode: 'newreq',
    CertRequest: csr,
    CertAttrib: `${template === null ? '' : `CertificateTemplate:${template}\r\n`}${extraAttribs}`,
    FriendlyType: 'Saved-Request Certificate',
    TargetStoreFlags: '0',
    SaveCert: 'yes',
  }).toString();
}

const execFileAsync = promisify(execFile);

export async function openssl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('openssl', args, { encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
