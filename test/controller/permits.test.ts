import assert from 'node:assert/strict';
import { Permits } from '../../controller/orchestrator/permits.js';

describe('controller/orchestrator/permits: a first-come-first-served counting semaphore', () => {
  it('hands out at most `limit` permits, the next ones in the order they were asked for', async () => {
    const permits = new Permits(2);
    const first = await permits.acquire();
    const second = await permits.acquire();
    const order: string[] = [];
    const third = permits.acquire().then((p) => { order.push('third'); return p; });
    const fourth = permits.acquire().then((p) => { order.push('fourth'); return p; });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    assert.equal(permits.inUse, 2);
    first.release();
    (await third).release();
    second.release();
    (await fourth).release();
    assert.deepEqual(order, ['third', 'fourth']);
    assert.equal(permits.inUse, 0);
  });

  it('counts a permit released twice once', async () => {
    const permits = new Permits(1);
    const permit = await permits.acquire();
    permit.release();
    permit.release();
    const again = await permits.acquire();
    let other = false;
    void permits.acquire().then(() => { other = true; });
    await new Promise((r) => setImmediate(r));
    assert.equal(other, false, 'the double release did not free a second permit');
    again.release();
    await new Promise((r) => setImmediate(r));
    assert.equal(other, true);
  });

  it('gives a released permit to a waiter, not to a newcomer that asks in between', async () => {
    const permits = new Permits(1);
    const held = await permits.acquire();
    const got: string[] = [];
    const waiter = permits.acquire().then((p) => { got.push('waiter'); return p; });
    held.release();
    const newcomer = permits.acquire().then((p) => { got.push('newcomer'); return p; });
    (await waiter).release();
    (await newcomer).release();
    assert.deepEqual(got, ['waiter', 'newcomer']);
  });

  it('refuses a limit that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Permits(bad), RangeError);
  });
});
