import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HISTORY_LIMIT, Journal, RESULT_DETAIL_MAX_CHARS, type LastResult } from '../../agent/journal.js';
import { LIMITS } from '../../common/limits.js';

/**
 * The journal's memory of renewals (what GetRenewal answers from): the entry in progress and a
 * bounded history of finished outcomes, by renewal id.
 */
describe('agent journal: renewal outcomes by id (GetRenewal)', () => {
  let dir: string;
  let journal: Journal;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'midcert-journal-'));
    journal = new Journal(join(dir, 'state'));
  });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  const result = (renewalId: string, patch: Partial<LastResult> = {}): LastResult => ({
    ok: true, renewalId, failedStep: '', rolledBack: false, previousSha256: 'aa'.repeat(32), currentSha256: 'bb'.repeat(32), finishedAt: '2030-01-01T00:00:00.000Z', ...patch,
  });
  const now = new Date().toISOString();

  it('answers UNKNOWN with RENEWAL_NOT_FOUND for an id it never saw', async () => {
    const status = await journal.renewalStatus('job9-mid01', false);
    assert.equal(status.state, 'unknown');
    assert.equal(status.errorCode, 'RENEWAL_NOT_FOUND');
    assert.equal(status.renewalId, 'job9-mid01');
    assert.equal(status.leafSha256, '');
  });

  it('tells prepared, installing, installed, rolled back and failed apart', async () => {
    await journal.save({ renewalId: 'r1', phase: 'prepared', mode: 'install', preparedAt: now, updatedAt: now });
    assert.equal((await journal.renewalStatus('r1', false)).state, 'prepared');
    assert.equal((await journal.renewalStatus('other', false)).state, 'unknown', 'another id is not this entry');

    await journal.save({ renewalId: 'r1', phase: 'installing', mode: 'install', step: 'verify-health', preparedAt: now, updatedAt: now });
    const installing = await journal.renewalStatus('r1', true);
    assert.equal(installing.state, 'installing');
    assert.equal(installing.step, 'verify-health');

    await journal.saveLastResult(result('r1'));
    await journal.clear('r1');
    const installed = await journal.renewalStatus('r1', false);
    assert.equal(installed.state, 'installed');
    assert.equal(installed.leafSha256, 'bb'.repeat(32));
    assert.equal(installed.finishedAt, '2030-01-01T00:00:00.000Z');

    await journal.saveLastResult(result('r2', { ok: false, rolledBack: true, failedStep: 'verify-health', currentSha256: 'aa'.repeat(32), error: { code: 'HEALTH_CHECK_FAILED', message: 'not Up', detail: '' } }));
    const back = await journal.renewalStatus('r2', false);
    assert.equal(back.state, 'rolled-back');
    assert.equal(back.errorCode, 'HEALTH_CHECK_FAILED');
    assert.equal(back.failedStep, 'verify-health');

    // A failed restore keeps the journal entry (retried at the next start): failed, not installing.
    await journal.save({ renewalId: 'r3', phase: 'installing', mode: 'install', step: 'restore', preparedAt: now, updatedAt: now });
    await journal.saveLastResult(result('r3', { ok: false, failedStep: 'import', error: { code: 'ROLLBACK_FAILED', message: 'disk full', detail: '' } }));
    assert.equal((await journal.renewalStatus('r3', false)).state, 'failed');
    assert.equal((await journal.renewalStatus('r3', false)).errorCode, 'ROLLBACK_FAILED');
    assert.equal((await journal.renewalStatus('r3', true)).state, 'installing', 'while this process retries it');

    // The earlier outcomes are still there: the history is by id, not only the last one.
    assert.equal((await journal.renewalStatus('r1', false)).state, 'installed');
    assert.equal((await journal.loadLastResult())?.renewalId, 'r3');
  });

  it('a prepared renewal whose install stopped before changing the host says PREPARED with the reason', async () => {
    await journal.save({ renewalId: 'r4', phase: 'prepared', mode: 'install', step: 'lint', preparedAt: now, updatedAt: now });
    await journal.saveLastResult(result('r4', { ok: false, failedStep: 'lint', currentSha256: '', error: { code: 'CHAIN_INVALID', message: 'another CA', detail: '' } }));
    const status = await journal.renewalStatus('r4', false);
    assert.equal(status.state, 'prepared');
    assert.equal(status.errorCode, 'CHAIN_INVALID');
    assert.equal(status.finishedAt, '');
  });

  it(`keeps the last ${HISTORY_LIMIT} outcomes, one per id, in a 0600 file replaced atomically`, async () => {
    for (let i = 0; i < HISTORY_LIMIT + 7; i++) await journal.saveLastResult(result(`r${i}`));
    await journal.saveLastResult(result('r10', { ok: false, rolledBack: true })); // same id again: replaced, moved to the end
    const history = await journal.loadHistory();
    assert.equal(history.length, HISTORY_LIMIT);
    assert.equal(new Set(history.map((r) => r.renewalId)).size, HISTORY_LIMIT);
    assert.equal(history.at(-1)?.renewalId, 'r10');
    assert.equal(history.at(-1)?.rolledBack, true);
    assert.equal(await journal.findResult('r6'), undefined, 'the oldest fell out');
    assert.equal((await journal.renewalStatus('r0', false)).state, 'unknown');
    assert.equal((await journal.findResult('r7'))?.renewalId, 'r7', 'the 50 newest stay');
    assert.equal((await stat(join(dir, 'state', 'history.json'))).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(join(dir, 'state'))).sort(), ['history.json', 'last-result.json'], 'no temporary files left');
    assert.ok(Array.isArray(JSON.parse(await readFile(join(dir, 'state', 'history.json'), 'utf8'))));
  });

  it(`caps each result's error detail (script output) at ${RESULT_DETAIL_MAX_CHARS} characters, head and tail kept, so ${HISTORY_LIMIT} × 2 MiB stays far below LIMITS.journalBytes`, async () => {
    const detail = `HEAD-${'x'.repeat(2 * 1024 * 1024)}-TAIL SEVERE *** ERROR *** the real cause`;
    for (let i = 0; i < HISTORY_LIMIT; i++) {
      await journal.saveLastResult(result(`big${i}`, { ok: false, rolledBack: true, error: { code: 'SCRIPT_FAILED', message: 'manage-certificates -a exited 1', detail } }));
    }
    const size = (await stat(join(dir, 'state', 'history.json'))).size;
    assert.ok(size < HISTORY_LIMIT * (RESULT_DETAIL_MAX_CHARS + 2048) && size < LIMITS.journalBytes / 10, `history.json is ${size} bytes`);
    const saved = (await journal.findResult('big3'))?.error?.detail ?? '';
    assert.ok(saved.length <= RESULT_DETAIL_MAX_CHARS, String(saved.length));
    assert.ok(saved.startsWith('HEAD-') && saved.endsWith('the real cause') && /characters cut/.test(saved));
    assert.equal((await journal.loadLastResult())?.error?.detail, saved);
  });

  it('reads the outcome of a state dir written before history.json existed (last-result.json only)', async () => {
    await journal.saveLastResult(result('old-1'));
    await rm(join(dir, 'state', 'history.json'));
    assert.equal((await journal.renewalStatus('old-1', false)).state, 'installed');
    await writeFile(join(dir, 'state', 'history.json'), '{"not":"a list"}');
    assert.deepEqual(await journal.loadHistory(), []);
    assert.equal((await journal.findResult('old-1'))?.renewalId, 'old-1');
  });

  it('a damaged history.json does not keep the next outcome from being recorded', async () => {
    await journal.saveLastResult(result('r1'));
    await writeFile(join(dir, 'state', 'history.json'), '[{"renewalId": "r1", trunc');
    await assert.rejects(journal.findResult('r1'), (e: { code?: string }) => e.code === 'STATE_DIR_UNUSABLE');
    await journal.saveLastResult(result('r2'));
    assert.deepEqual((await journal.loadHistory()).map((r) => r.renewalId), ['r2'], 'started afresh');
    assert.equal((await journal.renewalStatus('r2', false)).state, 'installed');
  });
});
