import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCaAdapter } from '../../controller/ca/index.js';
import { initLocalCa } from '../../controller/ca/local.js';
import { initDataDir } from '../../controller/data-dir.js';
import { KeptPorts } from '../../controller/orchestrator/kept-ports.js';
import type { AgentPort } from '../../controller/orchestrator/ports.js';
import type { RotationOptions } from '../../controller/orchestrator/rotate-agent.js';
import { runRotation } from '../../controller/orchestrator/run-rotation.js';
import { openStore, type Agent } from '../../controller/store/index.js';
import { firstCertificateSha256 } from '../../pki/certificate.js';
import { buildCsr } from '../../pki/csr.js';
import { generateKey } from '../../pki/keys.js';

interface Connection { agent: string; closed: boolean; calls: string[] }

/** An agent connection that records its calls and whether it was closed; `down` agents refuse. */
function recordingPort(agent: string, log: Connection[], csrPem: string, down: ReadonlySet<string> = new Set()): AgentPort {
  const conn: Connection = { agent, closed: false, calls: [] };
  log.push(conn);
  const use = (call: string): void => {
    assert.equal(conn.closed, false, `${call} on a closed connection to ${agent}`);
    conn.calls.push(call);
  };
  return {
    status: async () => {
      use('status');
      if (down.has(agent)) throw Object.assign(new Error('connection refused'), { code: 'UNAVAILABLE' });
      return { midName: agent, leafSha256: 'old', leafSubject: '', leafIssuer: '', notBefore: undefined, notAfter: new Date(Date.now() + 86_400_000).toISOString(), serviceActive: true, instanceUrl: '' };
    },
    prepare: async () => { use('prepare'); return { csrPem }; },
    install: async (_id, certificatePem) => { use('install'); return { ok: true, failedStep: '', errorCode: '', errorMessage: '', rolledBack: false, currentSha256: firstCertificateSha256(Buffer.from(certificatePem)) ?? '' }; },
    enableMutualAuth: async () => { throw new Error('unused'); },
    rollback: async () => { throw new Error('unused'); },
    renewal: async () => { throw new Error('unused'); },
    close: () => { conn.closed = true; },
  };
}

const idle = (name: string, closed: string[]): AgentPort => ({ close: () => { closed.push(name); } }) as unknown as AgentPort;

describe('controller/orchestrator/kept-ports: one connection per MID from selection to rotation', () => {
  it('keeps a bounded number of connections, hands each out once, and closes stale and surplus ones', () => {
    let clock = 0;
    const closed: string[] = [];
    const kept = new KeptPorts({ max: 2, maxAgeMs: 1000, now: () => clock });
    kept.keep('a', idle('a', closed));
    clock = 500;
    kept.keep('b', idle('b', closed));
    kept.keep('c', idle('c', closed));
    assert.deepEqual(closed, ['c'], 'over the bound: closed at once');
    assert.ok(kept.take('a'));
    assert.equal(kept.take('a'), undefined, 'handed out once');
    assert.equal(kept.take('zz'), undefined);
    kept.keep('d', idle('d', closed));
    clock = 1501;
    assert.equal(kept.take('d'), undefined, 'd is 1001 ms old: stale');
    assert.deepEqual(closed, ['c', 'b', 'd']);
    kept.keep('e', idle('e', closed));
    kept.closeAll();
    assert.deepEqual(closed, ['c', 'b', 'd', 'e']);
    assert.equal(kept.size, 0);
  });

  describe('runRotation', () => {
    let dir: string;
    let agents: Agent[];
    let csrPem: string;
    const options: RotationOptions = { force: true, expiringWithinDays: 30, canary: 0, batch: 10, maxFailures: 5, concurrency: 2, dryRun: false, caTimeoutMs: 5000, caPollMs: 10, upTimeoutMs: 5000 };
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'midcert-kept-'));
      await initDataDir(dir);
      await initLocalCa(dir);
      csrPem = buildCsr(await generateKey(), { subject: 'CN=mid' });
    });
    after(() => rm(dir, { recursive: true, force: true }));

    async function rotate(opts: RotationOptions, down: ReadonlySet<string> = new Set()) {
      const store = await openStore(dir, { actor: 'test' });
      try {
        if ((await store.agents.list()).length === 0) for (const name of ['mid01', 'mid02', 'mid03']) await store.agents.add({ name, address: `${name}.example:7443` });
        agents = await store.agents.list();
        const log: Connection[] = [];
        const ca = await createCaAdapter({ type: 'local', timeoutSeconds: 30, validityDays: 30 }, { dataDir: dir });
        const report = await runRotation({ store, dial: (a) => recordingPort(a.name, log, csrPem, down), ca, instance: undefined, onEvent: () => undefined }, agents, opts);
        return { report, log };
      } finally {
        await store.close();
      }
    }

    it('dials each selected MID once: the selection\'s connection carries the rotation, and is closed after it', async () => {
      const { report, log } = await rotate(options, new Set(['mid02']));
      assert.deepEqual(report.summary, { succeeded: 2, failed: 0, skipped: 1 });
      assert.deepEqual(log.map((c) => [c.agent, c.calls.join(','), c.closed]).sort(), [
        ['mid01', 'status,prepare,install', true],
        ['mid02', 'status', true],
        ['mid03', 'status,prepare,install', true],
      ]);
    });

    it('closes every connection of a dry run, rotating nothing', async () => {
      const { report, log } = await rotate({ ...options, dryRun: true });
      assert.equal(report.dryRun, true);
      assert.deepEqual(log.map((c) => [c.agent, c.calls.join(','), c.closed]).sort(), [['mid01', 'status', true], ['mid02', 'status', true], ['mid03', 'status', true]]);
    });

    it('closes the kept connections of MIDs a stopped rollout never started', async () => {
      const failing = { ...options, maxFailures: 0, concurrency: 1 };
      const store = await openStore(dir, { actor: 'test' });
      const log: Connection[] = [];
      try {
        const ca = { submit: async () => ({ kind: 'rejected' as const, reason: 'no' }), poll: async () => ({ kind: 'rejected' as const, reason: 'no' }) };
        const report = await runRotation({ store, dial: (a) => recordingPort(a.name, log, csrPem), ca, instance: undefined, onEvent: () => undefined }, agents, failing);
        assert.equal(report.stoppedEarly, true);
        assert.equal(report.summary.failed, 1);
      } finally {
        await store.close();
      }
      assert.equal(log.length, 3, 'one connection per MID');
      assert.ok(log.every((c) => c.closed), 'all closed, the unstarted ones included');
      assert.deepEqual(log.filter((c) => c.calls.includes('prepare')).length, 1);
    });
  });
});
