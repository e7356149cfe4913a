import assert from 'node:assert/strict';
import { planWaves, runWaves, type FleetTarget } from '../../controller/orchestrator/waves.js';

const fleet = (n: number, cluster?: (i: number) => string | undefined): FleetTarget[] =>
  Array.from({ length: n }, (_, i) => ({ name: `mid${String(i + 1).padStart(2, '0')}`, cluster: cluster?.(i) }));

describe('controller/orchestrator/waves', () => {
  it('plans a canary wave then batches', () => {
    const waves = planWaves(fleet(7), { canary: 1, batch: 3 });
    assert.deepEqual(waves.map((w) => w.length), [1, 3, 3]);
    assert.deepEqual(waves.flat().map((t) => t.name), fleet(7).map((t) => t.name));
  });

  it('never puts every MID of a cluster in one wave', () => {
    const targets = fleet(6, (i) => (i < 3 ? 'east' : i < 5 ? 'west' : undefined));
    const waves = planWaves(targets, { canary: 0, batch: 6 });
    for (const wave of waves) {
      assert.ok(wave.filter((t) => t.cluster === 'east').length <= 2);
      assert.ok(wave.filter((t) => t.cluster === 'west').length <= 1);
    }
    assert.equal(waves.flat().length, 6);
  });

  it('stops after a failed canary and skips the rest', async () => {
    const waves = planWaves(fleet(5), { canary: 1, batch: 2 });
    const run = await runWaves(waves, async (t) => t.name !== 'mid01', (ok) => !ok, { concurrency: 2, maxFailures: 3, canaryWave: true });
    assert.equal(run.stoppedEarly, true);
    assert.deepEqual(run.failed, ['mid01']);
    assert.deepEqual(run.skipped, ['mid02', 'mid03', 'mid04', 'mid05']);
  });

  it('stops when failures exceed the budget', async () => {
    const waves = planWaves(fleet(8), { canary: 1, batch: 2 });
    const bad = new Set(['mid02', 'mid03']);
    const run = await runWaves(waves, async (t) => !bad.has(t.name), (ok) => !ok, { concurrency: 1, maxFailures: 1, canaryWave: true });
    assert.equal(run.stoppedEarly, true);
    assert.deepEqual(run.failed, ['mid02', 'mid03']);
    assert.deepEqual(run.skipped, ['mid04', 'mid05', 'mid06', 'mid07', 'mid08']);
  });

  it('keeps at most `concurrency` rotations in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const waves = planWaves(fleet(12), { canary: 0, batch: 12 });
    await runWaves(waves, async () => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return true;
    }, () => false, { concurrency: 4, maxFailures: 0, canaryWave: false });
    assert.equal(peak, 4);
  });
});
