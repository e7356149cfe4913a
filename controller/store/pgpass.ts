import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * libpq's password file (PGPASSFILE, else ~/.pgpass): lines of host:port:database:user:password,
 * `*` matching anything, `\:` and `\\` escaped. Like libpq, a file others can read is ignored.
 * Used when store.passwordFile is not set (pg's own lookup is deprecated).
 */
export async function pgpassPassword(target: { host: string; port: number; database: string; user: string }, env = process.env): Promise<string | undefined> {
  const file = env.PGPASSFILE || join(homedir(), '.pgpass');
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile() || (info.mode & 0o077) !== 0 || info.size > 64 * 1024) return undefined;
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const wanted = [target.host, String(target.port), target.database, target.user];
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const fields = splitFields(line);
    if (fields.length < 5) continue;
    if (wanted.every((value, i) => fields[i] === '*' || fields[i] === value)) return fields.slice(4).join(':');
  }
  return undefined;
}

function splitFields(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (ch === '\\' && i + 1 < line.length) current += line[++i];
    else if (ch === ':' && fields.length < 4) { fields.push(current); current = ''; }
    else current += ch;
  }
  fields.push(current);
  return fields;
}
