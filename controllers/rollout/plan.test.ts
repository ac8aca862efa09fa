import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assignWaves, type Halt, type PlanInput, planRollout, resolveMaxUnavailable, type UnitState } from './plan.ts';

const settings = { maxUnavailableUnits: 1 as number | string, waves: [] as string[][], pause: false, rollback: 'None' as 'Auto' | 'None' };

/** Units named u0..u{n-1}; each on the old hash `old-<unit>` and done unless `states` says otherwise. */
function units(n: number, states: Record<string, Partial<UnitState>> = {}): UnitState[] {
  return Array.from({ length: n }, (_, i) => {
    const unit = `u${i}`;
    return {
      unit,
      desiredHash: `new-${unit}`,
      stableHash: `old-${unit}`,
      liveHash: `old-${unit}`,
      done: true,
      failed: false,
      ...states[unit],
    };
  });
}
const onNew = (unit: string, done = true): Partial<UnitState> => ({ liveHash: `new-${unit}`, done });
const input = (over: Partial<PlanInput> & { units: UnitState[] }): PlanInput => ({ target: 'T2', settings, ...over });
const applied = (p: ReturnType<typeof planRollout>) => p.units.filter((u) => u.action === 'apply').map((u) => u.unit);
const held = (p: ReturnType<typeof planRollout>) => p.units.filter((u) => u.action === 'hold').map((u) => u.unit);

describe('resolveMaxUnavailable', () => {
  test('integers are taken as they are', () => assert.equal(resolveMaxUnavailable(3, 10), 3));
  test('percentages round down and never go below one', () => {
    assert.equal(resolveMaxUnavailable('25%', 10), 2);
    assert.equal(resolveMaxUnavailable('10%', 5), 1);
    assert.equal(resolveMaxUnavailable('100%', 7), 7);
  });
  test('bad values are refused with the value named', () => {
    assert.throws(() => resolveMaxUnavailable(0, 10), /maxUnavailableUnits 0 must be a positive integer/);
    assert.throws(() => resolveMaxUnavailable(1.5, 10), /1.5/);
    assert.throws(() => resolveMaxUnavailable('x', 10), /"x" must be a positive integer or a percentage/);
    assert.throws(() => resolveMaxUnavailable('0%', 10), /between 1% and 100%/);
    assert.throws(() => resolveMaxUnavailable('101%', 10), /between 1% and 100%/);
  });
});

describe('assignWaves', () => {
  test('configured waves first, in order, then the rest sorted', () => {
    assert.deepEqual(assignWaves(['d', 'c', 'b', 'a'], [['c'], ['a', 'd']]), [['c'], ['a', 'd'], ['b']]);
  });
  test('unknown units are dropped, empty waves vanish, a unit listed twice stays in its first wave', () => {
    assert.deepEqual(assignWaves(['a', 'b'], [['x'], ['b', 'a'], ['a']]), [['b', 'a']]);
  });
  test('no waves: one wave of every unit', () => assert.deepEqual(assignWaves(['b', 'a'], []), [['a', 'b']]));
});

describe('planRollout', () => {
  test('starts at most maxUnavailableUnits units, in wave order', () => {
    const p = planRollout(input({ units: units(5), settings: { ...settings, maxUnavailableUnits: 2, waves: [['u3'], ['u1', 'u4']] } }));
    assert.deepEqual(applied(p), ['u3']);
    assert.equal(p.currentWave, 0);
    assert.deepEqual(p.currentWaveUnits, ['u3']);
    assert.equal(p.waveCount, 3);
  });
  test('in-progress units count against the limit', () => {
    const p = planRollout(input({ units: units(4, { u0: onNew('u0', false) }), settings: { ...settings, maxUnavailableUnits: 2 } }));
    assert.deepEqual(applied(p), ['u0', 'u1']);
    assert.deepEqual(held(p), ['u2', 'u3']);
    assert.equal(p.counts.progressing, 2);
    assert.equal(p.counts.pending, 2);
  });
  test('the next wave waits until every unit of the current one is done', () => {
    const s = { ...settings, maxUnavailableUnits: 5, waves: [['u0', 'u1']] };
    const waiting = planRollout(input({ units: units(4, { u0: onNew('u0'), u1: onNew('u1', false) }), settings: s }));
    assert.deepEqual(applied(waiting), ['u0', 'u1']);
    assert.equal(waiting.currentWave, 0);
    const next = planRollout(input({ units: units(4, { u0: onNew('u0'), u1: onNew('u1') }), settings: s }));
    assert.equal(next.currentWave, 1);
    assert.deepEqual(applied(next), ['u0', 'u1', 'u2', 'u3']);
  });
  test('a percentage limit is taken of all units', () => {
    const p = planRollout(input({ units: units(10), settings: { ...settings, maxUnavailableUnits: '30%' } }));
    assert.equal(p.limit, 3);
    assert.deepEqual(applied(p), ['u0', 'u1', 'u2']);
  });
  test('done when every unit runs its desired object and is available', () => {
    const all = Object.fromEntries(['u0', 'u1', 'u2'].map((u) => [u, onNew(u)]));
    const p = planRollout(input({ units: units(3, all) }));
    assert.equal(p.complete, true);
    assert.equal(p.currentWave, p.waveCount);
    assert.equal(p.counts.updated, 3);
    assert.deepEqual(held(p), []);
  });
  test('steady state without a change applies nothing new and is complete', () => {
    const same = units(3).map((u) => ({ ...u, desiredHash: u.liveHash! }));
    const p = planRollout(input({ units: same }));
    assert.equal(p.complete, true);
    assert.deepEqual(applied(p), ['u0', 'u1', 'u2']);
  });
  test('units without a live object are created at once and do not count against the limit', () => {
    const p = planRollout(
      input({ units: units(3, { u1: { liveHash: undefined, done: false }, u2: { liveHash: undefined, done: false } }) }),
    );
    assert.deepEqual(applied(p), ['u0', 'u1', 'u2']);
    assert.equal(p.counts.progressing, 3);
  });
  test('pause starts nothing; units in progress keep their new object', () => {
    const p = planRollout(
      input({ units: units(3, { u0: onNew('u0', false) }), settings: { ...settings, maxUnavailableUnits: 3, pause: true } }),
    );
    assert.deepEqual(applied(p), ['u0']);
    assert.deepEqual(held(p), ['u1', 'u2']);
    assert.equal(p.complete, false);
  });
  test('a failed unit halts the rollout, naming it; nothing further starts', () => {
    const p = planRollout(
      input({
        units: units(4, { u0: { ...onNew('u0', false), failed: true, failure: 'ProgressDeadlineExceeded' } }),
        settings: { ...settings, maxUnavailableUnits: 4 },
      }),
    );
    assert.deepEqual(p.halt, { target: 'T2', unit: 'u0', message: 'unit "u0": ProgressDeadlineExceeded' });
    assert.deepEqual(applied(p), ['u0']);
    assert.deepEqual(held(p), ['u1', 'u2', 'u3']);
    assert.equal(p.counts.failed, 1);
    assert.equal(p.complete, false);
  });
  test('the halt names the failed unit of the earliest wave', () => {
    const failed = (u: string) => ({ ...onNew(u, false), failed: true });
    const p = planRollout(input({ units: units(3, { u0: failed('u0'), u2: failed('u2') }), settings: { ...settings, waves: [['u2']] } }));
    assert.equal(p.halt?.unit, 'u2');
  });
  test('a recorded halt lasts for its target even after the unit recovers', () => {
    const halt: Halt = { target: 'T2', unit: 'u0', message: 'x' };
    const p = planRollout(input({ units: units(3, { u0: onNew('u0') }), halt }));
    assert.deepEqual(p.halt, halt);
    assert.deepEqual(held(p), ['u1', 'u2']);
  });
  test('a new change clears the halt and starts again from the first wave', () => {
    const p = planRollout(
      input({ target: 'T3', units: units(3, { u0: { liveHash: 'T2-u0' } }), halt: { target: 'T2', unit: 'u0', message: 'x' } }),
    );
    assert.equal(p.halt, undefined);
    assert.deepEqual(applied(p), ['u0']);
  });
  test('a unit failing on an object that did not change does not halt the rollout', () => {
    const p = planRollout(
      input({
        units: units(2, { u1: { desiredHash: 'old-u1', done: false, failed: true } }),
        settings: { ...settings, maxUnavailableUnits: 2 },
      }),
    );
    assert.equal(p.halt, undefined);
    assert.equal(p.units.find((u) => u.unit === 'u1')?.phase, 'failed');
  });
  test('rollback Auto puts every unit that took the failed target, and those still on the stable one, on the stable render', () => {
    const p = planRollout(
      input({
        units: units(4, { u0: { ...onNew('u0', false), failed: true }, u1: onNew('u1') }),
        settings: { ...settings, maxUnavailableUnits: 2, rollback: 'Auto' },
      }),
    );
    assert.deepEqual(
      p.units.filter((u) => u.action === 'rollback').map((u) => u.unit),
      ['u0', 'u1', 'u2', 'u3'],
    );
    assert.deepEqual(held(p), []);
    assert.equal(p.counts.rolledBack, 4);
  });
  test('rollback Auto keeps rolled-back units on the stable object on later syncs', () => {
    const p = planRollout(
      input({ units: units(2), halt: { target: 'T2', unit: 'u0', message: 'x' }, settings: { ...settings, rollback: 'Auto' } }),
    );
    assert.deepEqual(
      p.units.map((u) => u.action),
      ['rollback', 'rollback'],
    );
  });
  test('rollback Auto without a known stable target holds the units instead', () => {
    const p = planRollout(
      input({
        units: units(2, { u0: { ...onNew('u0', false), failed: true, stableHash: undefined }, u1: { stableHash: undefined } }),
        settings: { ...settings, rollback: 'Auto' },
      }),
    );
    assert.equal(p.halt?.unit, 'u0');
    assert.deepEqual(applied(p), ['u0']);
    assert.deepEqual(held(p), ['u1']);
  });
  test('a unit on an older, intermediate object is pending and rolls forward in turn', () => {
    const p = planRollout(input({ units: units(2, { u0: { liveHash: 'mid-u0' }, u1: { liveHash: 'mid-u1' } }) }));
    assert.deepEqual(applied(p), ['u0']);
    assert.deepEqual(held(p), ['u1']);
  });
});
