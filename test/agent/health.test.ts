import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findUnhealthy, healthLogFiles, markLogs, verifyMidHealthy } from '../../agent/health.js';
import type { ServiceManager } from '../../agent/service-manager.js';
import { MidcertError } from '../../common/errors.js';

/**
 * The health check after a MID restart, pinned to the vendor's files, line formats and messages
 * (docs/vendor-facts.md §5, §8): agent/logs/agent0.log.0 and agent/logs/wrapper.log
 * (SND:…/ecc-queue-mid-server.md), wrapper.txt (SND:…/r_MIDServerTroubleshooting.md); old format
 * (KB0745466) and Tokyo+ (SND:…/mid_file_cleaner.md); messages from KB0535234, KB0745466,
 * KB1048088 and SND:…/mid-server-connectivity-issues.md.
 */

const OLD = (msg: string): string => `03/28/19 10:27:09 (774) StartupSequencer SEVERE *** ERROR *** ${msg}\n`;
const TOKYO = (msg: string, level = 'SEVERE'): string => `2022-10-21T13:08:58.330+0200 ${level} (StartupSequencer) [StartupSequencer:212] ${msg}\n`;
const WRAPPER = (line: string): string => `INFO   | jvm 1    | 2022/10/21 13:08:58 | ${line}`;

const active: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => true };

async function codeOf(promise: Promise<unknown>): Promise<{ code: string; message: string } | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    assert.ok(err instanceof MidcertError, String(err));
    return { code: err.code, message: err.message };
  }
}

describe('MID health check: vendor log files, line formats and messages', () => {
  let dir: string;
  let logs: string;
  let agentLog: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-health-'));
    logs = join(dir, 'agent', 'logs');
    await mkdir(logs, { recursive: true });
    agentLog = join(logs, 'agent0.log.0');
    await writeFile(agentLog, '03/28/19 10:00:00 (001) MIDServer Initializing MID Server\n');
  });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  const check = (marks: Awaited<ReturnType<typeof markLogs>>, settleMs = 0): Promise<void> =>
    verifyMidHealthy(active, { logPath: agentLog, logMarks: marks, startTimeoutMs: 1000, settleMs, pollMs: 10 });

  it('watches agent0.log.0, wrapper.log and wrapper.txt (vendor-facts §8)', () => {
    assert.deepEqual(healthLogFiles(agentLog), [agentLog, join(logs, 'wrapper.log'), join(logs, 'wrapper.txt')]);
  });

  // Each vendor message, in both line formats, maps to its stable code.
  const cases: [string, string, RegExp?][] = [
    // SND:…/mid-server-connectivity-issues.md; KB1048088's full line.
    ['test failurejava.lang.IllegalStateException: User cannot be authenticated or is missing the proper roles.', 'MID_AUTH_FAILED'],
    // KB0535234.
    ['MID Server encryption keys do not match and are no longer valid. To restore proper functionality, invalidate and re-validate the MID Server.', 'MID_KEYS_MISMATCH',
      /no longer matches the public key the instance holds; credentials sent by the instance cannot be decrypted.*KB0535234, KB1048088/],
    // KB0745466 / KB0535234.
    ['An error occurred while decrypting credentials from instance AutomationIOException: No key pair found for DefaultSecurityKeyPairHandle', 'MID_KEYS_MISMATCH'],
    ['No key pair found for DefaultSecurityKeyPairHandle', 'MID_KEYS_MISMATCH'],
    // Handshake errors (no exact text documented, KB3029494): JSSE names and TLS alerts.
    ['javax.net.ssl.SSLHandshakeException: Received fatal alert: bad_certificate', 'MID_HANDSHAKE_FAILED'],
    ['sun.security.validator.ValidatorException: PKIX path building failed', 'MID_HANDSHAKE_FAILED'],
    ['Received fatal alert: certificate_required', 'MID_HANDSHAKE_FAILED'],
    // SND:…/install-mid-mutual-auth.md.
    ['Could not find valid private key', 'MID_KEY_INVALID'],
    // Any other "SEVERE *** ERROR ***".
    ['Something else broke', 'MID_LOG_SEVERE'],
  ];
  for (const [message, code, sentence] of cases) {
    for (const [format, line] of [['old', OLD(message)], ['Tokyo+', TOKYO(message)]] as const) {
      it(`${format} format in agent0.log.0: "${message.slice(0, 50)}…" → ${code}`, async () => {
        const marks = await markLogs(agentLog);
        await appendFile(agentLog, line);
        const hit = await codeOf(check(marks));
        assert.equal(hit?.code, code, hit?.message);
        assert.ok(hit?.message.includes(message.slice(0, 40)), hit?.message);
        if (sentence) assert.match(hit?.message ?? '', sentence);
      });
    }
  }

  it('Tokyo+ "ERROR (" lines count, INFO and WARN lines do not', async () => {
    const marks = await markLogs(agentLog);
    await appendFile(agentLog, TOKYO('Initializing MID Server', 'INFO') + TOKYO('slow answer', 'WARN'));
    assert.equal(await codeOf(check(marks)), undefined);
    await appendFile(agentLog, TOKYO('Connection failed', 'ERROR'));
    assert.equal((await codeOf(check(marks)))?.code, 'MID_LOG_SEVERE');
  });

  it('reads wrapper.log (with the wrapper prefix) and wrapper.txt, not only agent0.log.0', async () => {
    const wrapper = join(logs, 'wrapper.log');
    await writeFile(wrapper, WRAPPER(OLD('old failure before the restart: bad_certificate')));
    let marks = await markLogs(agentLog);
    assert.equal(await codeOf(check(marks)), undefined, 'a line from before the restart does not count');
    await appendFile(wrapper, WRAPPER(OLD('MID Server encryption keys do not match and are no longer valid.')));
    const hit = await codeOf(check(marks));
    assert.equal(hit?.code, 'MID_KEYS_MISMATCH');
    assert.match(hit?.message ?? '', /wrapper\.log reports/);
    await rm(wrapper);
    marks = await markLogs(agentLog); // wrapper.txt does not exist yet: everything in it is new
    await writeFile(join(logs, 'wrapper.txt'), WRAPPER(TOKYO('javax.net.ssl.SSLHandshakeException: certificate_required')));
    assert.equal((await codeOf(check(marks)))?.code, 'MID_HANDSHAKE_FAILED');
  });

  it('only lines written after the restart count, per file', async () => {
    await appendFile(agentLog, OLD('User cannot be authenticated or is missing the proper roles.'));
    const marks = await markLogs(agentLog);
    await appendFile(agentLog, TOKYO('MID Server started', 'INFO'));
    assert.equal(await codeOf(check(marks, 50)), undefined);
  });

  it('a log rotated after the restart: the new file is read from its start and the rest of the old one (agent0.log.1) from the mark', async () => {
    const marks = await markLogs(agentLog);
    await appendFile(agentLog, OLD('User cannot be authenticated or is missing the proper roles.'));
    await rename(agentLog, join(logs, 'agent0.log.1'));
    await writeFile(agentLog, TOKYO('Initializing MID Server', 'INFO'));
    assert.equal((await codeOf(check(marks)))?.code, 'MID_AUTH_FAILED', 'the line in the rotated-away file is found');
    const again = await markLogs(agentLog);
    await rename(agentLog, join(logs, 'agent0.log.2'));
    await writeFile(agentLog, TOKYO('PKIX path building failed'));
    assert.equal((await codeOf(check(again)))?.code, 'MID_HANDSHAKE_FAILED', 'the new file is read from its start');
  });

  it('a log truncated in place (copytruncate) is read from its start', async () => {
    await appendFile(agentLog, 'x'.repeat(10_000) + '\n');
    const marks = await markLogs(agentLog);
    await truncate(agentLog, 0);
    await appendFile(agentLog, OLD('Could not find valid private key'));
    assert.equal((await codeOf(check(marks)))?.code, 'MID_KEY_INVALID');
  });

  it('the most telling line wins over a generic SEVERE one (KB0745466: the key-pair line follows the SEVERE line)', () => {
    const hit = findUnhealthy([{ text: OLD('An error occurred while decrypting automation encryption keys.') + 'com.snc.automation.AutomationIOException: No key pair found for DefaultSecurityKeyPairHandle\n' }]);
    assert.equal(hit?.code, 'MID_KEYS_MISMATCH');
  });

  it('a service that never becomes active is still HEALTH_CHECK_FAILED', async () => {
    const inactive: ServiceManager = { ...active, isActive: async () => false };
    const hit = await codeOf(verifyMidHealthy(inactive, { logPath: agentLog, startTimeoutMs: 30, settleMs: 0, pollMs: 10 }));
    assert.equal(hit?.code, 'HEALTH_CHECK_FAILED');
  });
});
