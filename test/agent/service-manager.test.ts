import assert from 'node:assert/strict';
import { cachedStatusView, type ServiceManager } from '../../agent/service-manager.js';

describe('agent/service-manager: cached status view', () => {
  it('shares one status query within the TTL and asks again after it', async () => {
    let queries = 0;
    const service: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => { queries++; return true; } };
    const view = cachedStatusView(service, 100);
    assert.deepEqual(await Promise.all([view.isActive(), view.isActive(), view.isActive()]), [true, true, true]);
    assert.equal(queries, 1);
    assert.equal(view.unit, 'mid');
    await new Promise((r) => setTimeout(r, 150));
    await view.isActive();
    assert.equal(queries, 2);
  });

  it('does not cache a failed query', async () => {
    let calls = 0;
    const service: ServiceManager = { manager: 'command', unit: 'mid', start: async () => undefined, stop: async () => undefined, isActive: async () => { calls++; if (calls === 1) throw new Error('timeout'); return false; } };
    const view = cachedStatusView(service, 10_000);
    await assert.rejects(view.isActive());
    await new Promise((r) => setImmediate(r));
    assert.equal(await view.isActive(), false);
    assert.equal(calls, 2);
  });
});
