import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MidcertError } from '../../common/errors.js';
import { Writable } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import pino from 'pino';
import type { AgentConfig } from '../../agent/config.js';
import { REDACT_PATHS } from '../../agent/daemon.js';
import { EventHub } from '../../agent/events.js';
import type { LastResult } from '../../agent/journal.js';
import { RenewalEngine } from '../../agent/renewal/engine.js';
import { agentHandlers } from '../../agent/rpc/handlers.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { operationResult } from '../../agent/status.js';
import { RevertToBasicAuthRequestSchema } from '../../proto/gen/midcert/v1/agent_pb.js';
import type { CallContext } from '../../proto/grpc-adapter.js';
import { BASIC_AUTH_ARGV_WARNING, scriptRunner } from '../../agent/manage-certificates.js';
import type { MidPaths } from '../../agent/mid-install.js';
import { connectAgent, type AgentClient } from '../../proto/agent-client.js';
import { createLabCa, type Identity, type LabCa } from '../../lab/lab-ca.js';
import { PROFILES } from '../../pki/issue.js';
import { startMidWorld, waitFor, type MidWorld } from '../helpers/mid-world.js';

const AGENT = resolve('bin/midcert-agent');
const TSX = resolve('node_modules/tsx/dist/esm/index.mjs');
const CTL = resolve('lab/mid/ctl-main.ts');

/** A password no other text in the test contains, with characters that XML, JSON and URLs escape. */
function distinctivePassword(tag: string): string {
  return `Br3ak-${tag}-<&"${randomBytes(6).toString('hex')}'>`;
}

/** The forms a leak could take: as given, XML-escaped (config.xml, as the vendor script writes it), URL-encoded. */
function forms(password: string): string[] {
  const xml = password.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  return [password, xml, xml.replace(/'/g, '&apos;'), encodeURIComponent(password)];
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** Every file under `dir` and every text given: none holds any form of the password. */
async function assertNowhere(password: string, dir: string, texts: Record<string, string>): Promise<number> {
  const files = await filesUnder(dir);
  for (const file of files) {
    const content = (await readFile(file)).toString('latin1') + (await readFile(file)).toString('utf8');
    for (const form of forms(password)) assert.ok(!content.includes(form), `${file} holds the password (${form === password ? 'as given' : 'escaped'})`);
  }
  for (const [what, text] of Object.entries(texts)) {
    for (const form of forms(password)) assert.ok(!text.includes(form), `${what} holds the password`);
  }
  return files.length;
}

describe('break-glass revert to basic auth: the password on manage-certificates -b argv', function () {
  this.timeout(180_000);

  describe('the script runner (agent/manage-certificates.ts) with a script that echoes its argv', () => {
    let dir: string;
    let paths: MidPaths;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'midcert-breakglass-'));
      const agentDir = join(dir, 'agent');
      await mkdir(agentDir);
      const script = join(dir, 'echo-argv.sh');
      // Prints its arguments raw, XML-escaped and in a Basic header, on both streams, then fails
      // (or hangs, with HANG=1).
      await writeFile(script, [
        '#!/bin/bash',
        'printf "args: %s\\n" "$*"',
        'x=${3//&/&amp;}; x=${x//</&lt;}; x=${x//>/&gt;}; x=${x//\\"/&quot;}; x=${x//\\x27/&apos;}',
        'printf "<parameter name=\\"mid.instance.password\\" value=\\"%s\\"/>\\n" "$x" >&2',
        'printf "Authorization: Basic %s\\n" "$(printf "%s:%s" "$2" "$3" | base64 -w0)"',
        'echo "config.xml: permission denied" >&2',
        '[ "$HANG" = 1 ] && sleep 30',
        'exit 3',
        '',
      ].join('\n'));
      await chmod(script, 0o755);
      paths = { home: dir, agentDir, configXml: join(agentDir, 'config.xml'), keystore: join(dir, 'ks'), script, log: join(dir, 'log') };
    });
    after(async () => { await rm(dir, { recursive: true, force: true }); });

    it('a failing -b: SCRIPT_FAILED whose message and detail hold no form of the password, the rest of the output kept', async () => {
      const password = distinctivePassword('fail');
      const err = await scriptRunner(paths, { timeoutMs: 10_000 }).revertToBasicAuth('svc.mid', password).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof MidcertError, String(err));
      assert.equal(err.code, 'SCRIPT_FAILED');
      assert.equal(err.message, 'manage-certificates -b exited 3');
      assert.match(err.detail ?? '', /config\.xml: permission denied/, 'the useful part of the output is kept');
      assert.match(err.detail ?? '', /args: -b svc\.mid \*\*\*\*/, 'the echoed argv is redacted');
      assert.equal(err.cause, undefined);
      const basic = Buffer.from(`svc.mid:${password}`).toString('base64');
      for (const text of [err.message, err.detail ?? '', err.stack ?? '']) {
        for (const form of [...forms(password), basic]) assert.ok(!text.includes(form), `leaked: ${text}`);
      }
    });

    it('a hanging -b: SCRIPT_TIMEOUT, output redacted the same way', async () => {
      const password = distinctivePassword('hang');
      const runner = scriptRunner(paths, { timeoutMs: 1500, env: { ...process.env, HANG: '1' } });
      const err = await runner.revertToBasicAuth('svc.mid', password).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof MidcertError && err.code === 'SCRIPT_TIMEOUT', String(err));
      for (const text of [err.message, err.detail ?? '']) for (const form of forms(password)) assert.ok(!text.includes(form), text);
    });

    it('a password Node refuses to pass (NUL byte) is refused as USAGE without echoing it', async () => {
      const password = `${distinctivePassword('nul')}\u0000x`;
      const err = await scriptRunner(paths, { timeoutMs: 10_000 }).revertToBasicAuth('svc.mid', password).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof MidcertError && err.code === 'USAGE', String(err));
      assert.ok(!`${err.message}${err.stack}`.includes(password.slice(0, 20)), err.message);
    });
  });

  describe('through the agent daemon (real process, mTLS gRPC, simulated MID and instance)', () => {
    let world: MidWorld;
    let fleet: LabCa;
    let controller: Identity;
    let client: AgentClient;
    let daemon: ChildProcess | undefined;
    const logs: string[] = [];

    async function freePort(): Promise<number> {
      const server = createServer();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      await new Promise<void>((r) => server.close(() => r()));
      return port;
    }

    before(async () => {
      world = await startMidWorld('mid01');
      const socket = join(world.dir, 'runner.sock');
      await world.runner.listen(socket);
      fleet = await createLabCa('Fleet');
      const agentId = await fleet.issueIdentity('CN=mid01-agent', { ...PROFILES.server, sans: ['DNS:mid01-agent', 'IP:127.0.0.1'] });
      controller = await fleet.issueIdentity('CN=midcert-controller', PROFILES.operator);
      await writeFile(join(world.dir, 'agent.pem'), agentId.certPem + fleet.intermediate.certPem);
      await writeFile(join(world.dir, 'agent.key'), agentId.keyPem, { mode: 0o600 });
      await writeFile(join(world.dir, 'fleet-ca.pem'), fleet.root.certPem);
      const port = await freePort();
      const ctl = (verb: string): string[] => [process.execPath, '--import', TSX, CTL, '--socket', socket, verb, 'mid01'];
      const configPath = join(world.dir, 'agent.yaml');
      await writeFile(configPath, [
        'mid:', `  home: ${world.host.home}`,
        'service:', '  manager: command', `  start: ${JSON.stringify(ctl('start'))}`, `  stop: ${JSON.stringify(ctl('stop'))}`, `  status: ${JSON.stringify(ctl('is-active'))}`,
        'verify:', '  settleSeconds: 2', '  startTimeoutSeconds: 30',
        'listen:', `  address: 127.0.0.1:${port}`,
        'tls:', '  cert: agent.pem', '  key: agent.key', '  clientCa: fleet-ca.pem',
        'access:', '  operators: [midcert-controller]',
        'stateDir: state',
        '',
      ].join('\n'));
      daemon = spawn(AGENT, ['run', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      daemon.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
      daemon.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
      await waitFor(() => logs.join('').includes('midcert-agent serving'), 30_000, `daemon did not start: ${logs.join('')}`);
      client = connectAgent(`127.0.0.1:${port}`, { caPem: fleet.root.certPem, certChainPem: controller.certPem + fleet.intermediate.certPem, keyPem: controller.keyPem, serverName: 'mid01-agent', unaryDeadlineMs: 120_000 });
    });

    after(async () => {
      client?.close();
      if (daemon && daemon.exitCode === null) {
        const exited = new Promise((r) => daemon?.once('exit', r));
        daemon.kill('SIGTERM');
        await exited;
      }
      await world?.close();
    });

    /** Events seen on WatchEvents while `work` runs. */
    async function watching<T>(work: () => Promise<T>): Promise<{ value: T | undefined; error: unknown; events: string[] }> {
      const abort = new AbortController();
      const events: string[] = [];
      const reading = (async () => {
        try {
          for await (const e of client.watchEvents({}, { signal: abort.signal })) events.push(`${e.type}: ${e.message}`);
        } catch {
          // cancelled at the end
        }
      })();
      await new Promise((r) => setTimeout(r, 300)); // subscribed before the work starts
      let value: T | undefined;
      let error: unknown;
      try {
        value = await work();
      } catch (err) {
        error = err;
      }
      await waitFor(() => events.some((e) => e.includes('break-glass')), 5000, `no break-glass event: ${events.join(' | ')}`).catch(() => undefined);
      abort.abort();
      await reading;
      return { value, error, events };
    }

    it('a revert that fails its health check: the error and the log warn and say rotate, config.xml is back, the password is nowhere in the state dir, logs or error', async () => {
      const password = distinctivePassword('refused');
      world.instance.admin.addUser({ userName: 'mid.breakglass1', password: `other-${randomBytes(4).toString('hex')}`, roles: ['mid_server'] });
      // A renewal prepared and waiting: the journal and a renewal folder are in the state dir too.
      assert.match((await client.prepareRenewal({ renewalId: 'bg-prepared' })).csrPem, /CERTIFICATE REQUEST/);
      const config = await readFile(world.host.configPath);
      const before = logs.length;
      const { error, events } = await watching(() => client.revertToBasicAuth({ username: 'mid.breakglass1', password }));
      assert.ok(error instanceof MidcertError, String(error));
      // The script ran and the MID did not come back (the code names how: HEALTH_CHECK_FAILED, or MID_AUTH_FAILED where the log says why).
      assert.match(error.code, /^(HEALTH_CHECK_FAILED|MID_AUTH_FAILED)$/, `${error.code}: ${error.message}`);
      assert.ok(error.detail?.includes(BASIC_AUTH_ARGV_WARNING), `detail carries the warning: ${error.detail}`);
      assert.match(error.detail ?? '', /rotate that password/);
      assert.deepEqual(await readFile(world.host.configPath), config, 'config.xml restored byte for byte');
      const logText = logs.slice(before).join('');
      assert.match(logText, /break-glass revert to basic auth: the password was passed to manage-certificates -b on its command line/);
      assert.ok(events.some((e) => e.includes(BASIC_AUTH_ARGV_WARNING)), events.join(' | '));
      const searched = await assertNowhere(password, join(world.dir, 'state'), {
        'the error message': error.message, 'the error detail': error.detail ?? '', 'the agent log': logs.join(''), 'the events': events.join('\n'),
        'the MID log': await readFile(world.host.logPath, 'utf8').catch(() => ''), 'config.xml': (await readFile(world.host.configPath)).toString(),
      });
      assert.ok(searched >= 2, `the state dir holds the journal and the prepared renewal (${searched} files searched)`);
      await waitFor(() => world.midStatus().state === 'active' && world.midStatus().instanceStatus === 'Up', 20_000, 'the MID is not back Up on mTLS');
    });

  });

  describe('a revert that succeeds (handlers + engine in process; the lab instance takes heartbeats over mTLS only, so the service stand-in keeps the MID as it runs)', () => {
    let world: MidWorld;
    before(async () => { world = await startMidWorld('mid01'); });
    after(async () => { await world?.close(); });

    it('the response, the last result, the log and the events warn and say rotate; the password is in config.xml and nowhere else', async () => {
      const password = distinctivePassword('ok');
      const logLines: string[] = [];
      const sink = new Writable({ write(chunk: Buffer, _enc, done) { logLines.push(...chunk.toString().split('\n').filter(Boolean)); done(); } });
      const log = pino({ level: 'info', redact: { paths: REDACT_PATHS, censor: '****' } }, sink);
      const stays: ServiceManager = { manager: 'command', unit: 'mid01', start: async () => undefined, stop: async () => undefined, isActive: async () => true };
      const effects = world.effects({ service: stays, verify: { settleMs: 300, startTimeoutMs: 5000 } });
      const engine = new RenewalEngine(effects);
      await engine.prepare({ renewalId: 'bg-prepared', subject: 'CN=mid01', sans: [], keyType: 'rsa' });
      const events = new EventHub();
      const seen: string[] = [];
      const abort = new AbortController();
      const reading = (async () => { for await (const e of events.subscribe(abort.signal)) seen.push(`${e.type}: ${e.message}`); })();
      const handlers = agentHandlers({ cfg: {} as AgentConfig, effects, engine, events, startedAt: new Date(), log });
      const ctx: CallContext = { identity: undefined, role: 'operator', signal: abort.signal, method: 'RevertToBasicAuth' };
      const result = await handlers.revertToBasicAuth(create(RevertToBasicAuthRequestSchema, { username: 'mid.breakglass', password }), ctx) as { ok?: boolean; warnings?: string[] };
      await waitFor(() => seen.length > 0, 2000, 'no event');
      abort.abort();
      await reading;

      assert.equal(result.ok, true, JSON.stringify(result));
      assert.deepEqual(result.warnings, [BASIC_AUTH_ARGV_WARNING]);
      assert.match(BASIC_AUTH_ARGV_WARNING, /briefly visible to local users of this MID host in the process list .*rotate that password on the instance/);
      const last = await effects.journal.loadLastResult();
      assert.deepEqual(last?.warnings, [BASIC_AUTH_ARGV_WARNING], 'GetStatus shows it in agent.lastResult');
      assert.deepEqual(operationResult(last as LastResult).warnings, [BASIC_AUTH_ARGV_WARNING]);
      const warned = logLines.map((l) => JSON.parse(l) as { level: number; msg: string; username?: string }).filter((l) => l.msg.includes('break-glass'));
      assert.equal(warned.length, 1, logLines.join('\n'));
      assert.equal(warned[0]?.level, 40, 'logged as a warning');
      assert.equal(warned[0]?.username, 'mid.breakglass');
      assert.ok(warned[0]?.msg.endsWith(BASIC_AUTH_ARGV_WARNING));
      assert.ok(seen.some((e) => e.includes(BASIC_AUTH_ARGV_WARNING)), seen.join(' | '));
      // The search finds the password where it belongs: the vendor script wrote it into config.xml.
      const configText = await readFile(world.host.configPath, 'utf8');
      assert.ok(forms(password).some((f) => configText.includes(f)), 'config.xml holds the password the revert put there');
      const searched = await assertNowhere(password, join(world.dir, 'state'), {
        'the response': JSON.stringify(result), 'the log': logLines.join('\n'), 'the events': seen.join('\n'),
        'the MID log': await readFile(world.host.logPath, 'utf8').catch(() => ''),
      });
      assert.ok(searched >= 4, `journal, last result, history and the prepared renewal searched (${searched} files)`);
    });
  });
});
