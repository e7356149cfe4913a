import { parseArgs } from 'node:util';
import { STOREPASS_ENV, sendControlRequest, type ControlRequest, type ControlResponse } from './control-protocol.js';
import type { MidStatus } from './unit-status.js';

/**
 * midctl — the systemctl of the MID runner, for the agent's `service.manager: command` arrays:
 *   node --import tsx lab/mid/ctl-main.ts --socket S start|stop|restart|status|is-active UNIT
 *   node --import tsx lab/mid/ctl-main.ts --socket S register UNIT HOME | unregister UNIT | list | shutdown
 * Exit codes as systemctl: 0 ok; 3 unit not active (status, is-active); 4 no such unit (status);
 * 5 no such unit (start, stop, restart); 1 other failures, including an unreachable runner; 2 usage.
 * --json prints the runner's answer as JSON instead of text.
 */

const USAGE = `usage: ctl-main.ts --socket PATH [--json] VERB [ARGS]
  start|stop|restart|status|is-active UNIT
  register UNIT HOME     (keystore password: $${STOREPASS_ENV}, else changeit)
  unregister UNIT | list | shutdown`;

const EXIT = { ok: 0, failed: 1, usage: 2, notActive: 3, noSuchUnitStatus: 4, noSuchUnit: 5 } as const;

export async function midctl(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: true, options: { socket: { type: 'string' }, json: { type: 'boolean' } } });
  } catch (e) {
    err(`midctl: ${(e as Error).message}\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const request = values.socket ? toRequest(positionals) : undefined;
  if (!values.socket || !request) {
    err(`${USAGE}\n`);
    return EXIT.usage;
  }
  let response: ControlResponse;
  try {
    response = await sendControlRequest(values.socket, request);
  } catch (e) {
    err(`Failed to connect to the MID runner: ${(e as Error).message}\n`);
    return EXIT.failed;
  }
  if (values.json) out(`${JSON.stringify(response)}\n`);
  return report(request, response, values.json ? () => undefined : out, err);
}

function toRequest(args: string[]): ControlRequest | undefined {
  const [verb, unit, home] = args;
  switch (verb) {
    case 'start': case 'stop': case 'restart': case 'status': case 'is-active': case 'unregister':
      return unit !== undefined && args.length === 2 ? { verb, unit } : undefined;
    case 'register': {
      if (unit === undefined || home === undefined || args.length !== 3) return undefined;
      const storepass = process.env[STOREPASS_ENV];
      return { verb, unit, home, ...(storepass ? { storepass } : {}) };
    }
    case 'list': case 'shutdown':
      return args.length === 1 ? { verb } : undefined;
    default:
      return undefined;
  }
}

function report(req: ControlRequest, res: ControlResponse, out: (s: string) => void, err: (s: string) => void): number {
  if (!res.ok) {
    const unitVerb = req.verb === 'start' || req.verb === 'stop' || req.verb === 'restart';
    if (res.error.code === 'UNIT_NOT_FOUND') {
      if (req.verb === 'is-active') { out('inactive\n'); return EXIT.notActive; }
      err(unitVerb ? `Failed to ${req.verb} ${unitOf(req)}.service: ${res.error.message}\n` : `${res.error.message}\n`);
      return unitVerb ? EXIT.noSuchUnit : req.verb === 'status' ? EXIT.noSuchUnitStatus : EXIT.failed;
    }
    err(`${res.error.message}\n`);
    return EXIT.failed;
  }
  if (req.verb === 'is-active') {
    out(`${res.status?.state ?? 'unknown'}\n`);
    return res.status?.state === 'active' ? EXIT.ok : EXIT.notActive;
  }
  if (req.verb === 'status' && res.status) {
    out(statusText(res.status));
    return res.status.state === 'active' ? EXIT.ok : EXIT.notActive;
  }
  if (req.verb === 'list') out((res.units ?? []).map((u) => `${u.unit}.service ${u.state} ${u.instanceStatus}\n`).join(''));
  return EXIT.ok;
}

function unitOf(req: ControlRequest): string {
  return 'unit' in req ? req.unit.replace(/\.service$/, '') : '';
}

export function statusText(s: MidStatus): string {
  const active = s.state === 'active' ? 'active (running)' : s.state === 'failed' ? 'failed (Result: exit-code)' : s.state === 'inactive' ? 'inactive (dead)' : s.state;
  const lines = [
    `● ${s.unit}.service - ServiceNow MID Server${s.midName ? ` ${s.midName}` : ''} (midcert lab)`,
    `     Loaded: loaded (${s.home}/agent)`,
    `     Active: ${active} since ${s.since}`,
  ];
  if (s.instanceUrl) lines.push(`   Instance: ${s.instanceUrl} ${s.instanceStatus} (${s.heartbeatsOk} heartbeats accepted, ${s.heartbeatsFailed} failed)`);
  if (s.auth) lines.push(`       Auth: ${s.auth}${s.leaf ? ` — ${s.leaf.subject}, expires ${s.leaf.notAfter}` : ''}`);
  if (s.lastError) lines.push(` Last error: ${s.lastError}`);
  return `${lines.join('\n')}\n`;
}

const isEntry = process.argv[1] !== undefined && /ctl-main\.[cm]?[jt]s$/.test(process.argv[1]);
if (isEntry) {
  midctl(process.argv.slice(2), (s) => process.stdout.write(s), (s) => process.stderr.write(s)).then((code) => { process.exitCode = code; });
}
