// The rollout planner: which units of a grid may take their new render now. Pure: the caller
// reads each unit's state from its live Deployment and the previous rollout status; the plan
// says which units to apply, which to hold on what they run, which to return to the stable
// template, and what the status and events should say.
//
// Rules (documented in controllers/README.md, "Rollouts"):
// - A unit is updated when its live object carries the render hash of its desired object, and
//   done when it is also fully rolled out and available. A unit without a live object is created
//   at once and does not count against the limit: nothing runs there to break.
// - Waves run in order; units in no wave form a last wave. A wave starts only when every unit of
//   the waves before it is done. Within the current wave, at most maxUnavailableUnits units are
//   in progress (updated, not yet done) at a time.
// - pause: no further unit starts; units already in progress finish.
// - A unit that fails (its Deployment reports ProgressDeadlineExceeded) halts the rollout of
//   that target: nothing else starts. The halt is remembered by target hash, so it lasts until
//   the grid's templates change; a new change starts a fresh rollout from the first wave.
// - rollback Auto: the units of a halted rollout that took the failed target go back to the
//   stable target (the last one every unit ran), when one is known; units still on the stable
//   target get its render too, so drift on them is corrected as usual.

export interface RolloutSettings {
  maxUnavailableUnits: number | string;
  /** Ordered unit lists; a unit listed twice belongs to its first wave. */
  waves: string[][];
  pause: boolean;
  rollback: 'Auto' | 'None';
}

export interface UnitState {
  unit: string;
  /** Render hash of the unit's desired object for the grid's current templates. */
  desiredHash: string;
  /** Render hash of the unit's desired object for the stable target; undefined when none is known. */
  stableHash?: string;
  /** Render hash the live object carries; undefined when the unit has no live object. */
  liveHash?: string;
  /** The live object observed its generation and is fully updated and available. */
  done: boolean;
  /** The live object reports that it cannot make progress (ProgressDeadlineExceeded). */
  failed: boolean;
  /** Why it failed, for the status and the event. */
  failure?: string;
}

export interface Halt {
  /** The target whose rollout halted. */
  target: string;
  unit: string;
  message: string;
}

export interface PlanInput {
  /** Hash of the grid's current templates (everything rendering depends on besides the unit). */
  target: string;
  settings: RolloutSettings;
  units: UnitState[];
  /** Halt recorded by an earlier sync, if any. */
  halt?: Halt;
}

/** What to do with one unit this sync. */
export type UnitAction =
  /** Apply the desired object (new target, or already on it). */
  | 'apply'
  /** Leave the live object alone: it keeps what it runs. */
  | 'hold'
  /** Apply the render of the stable target. */
  | 'rollback';

export type UnitPhase = 'updated' | 'progressing' | 'pending' | 'failed' | 'rolledBack';

export interface UnitPlan {
  unit: string;
  action: UnitAction;
  phase: UnitPhase;
  /** 0-based index of the unit's wave. */
  wave: number;
}

export interface Plan {
  units: UnitPlan[];
  /** 0-based index of the first wave not done; equal to the number of waves when all are done. */
  currentWave: number;
  waveCount: number;
  /** Units of the current wave, in wave order. */
  currentWaveUnits: string[];
  halt?: Halt;
  /** Every unit runs the target and is done. */
  complete: boolean;
  limit: number;
  counts: { updated: number; progressing: number; pending: number; failed: number; rolledBack: number };
}

/** maxUnavailableUnits as a count: an integer, or a percentage of `total` rounded down; at least 1. */
export function resolveMaxUnavailable(value: number | string, total: number): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 1) throw new Error(`maxUnavailableUnits ${value} must be a positive integer`);
    return value;
  }
  const m = /^(\d{1,3})%$/.exec(value);
  if (!m) throw new Error(`maxUnavailableUnits ${JSON.stringify(value)} must be a positive integer or a percentage like "25%"`);
  const pct = Number(m[1]);
  if (pct < 1 || pct > 100) throw new Error(`maxUnavailableUnits ${value} must be between 1% and 100%`);
  return Math.max(1, Math.floor((total * pct) / 100));
}

/** Groups `units` into the configured waves (in order, unknown values dropped) plus a last wave of the rest. */
export function assignWaves(units: readonly string[], waves: readonly (readonly string[])[]): string[][] {
  const present = new Set(units);
  const placed = new Set<string>();
  const out: string[][] = [];
  for (const wave of waves) {
    const members = wave.filter((u) => present.has(u) && !placed.has(u));
    for (const u of members) placed.add(u);
    if (members.length > 0) out.push(members);
  }
  const rest = [...units].filter((u) => !placed.has(u)).sort();
  if (rest.length > 0) out.push(rest);
  return out;
}

export function planRollout(input: PlanInput): Plan {
  const { settings, target } = input;
  const byUnit = new Map(input.units.map((u) => [u.unit, u]));
  const waves = assignWaves(
    input.units.map((u) => u.unit),
    settings.waves,
  );
  const waveOf = new Map<string, number>();
  for (const [i, w] of waves.entries()) for (const u of w) waveOf.set(u, i);
  const limit = resolveMaxUnavailable(settings.maxUnavailableUnits, input.units.length);

  const updated = (s: UnitState) => s.liveHash === undefined || s.liveHash === s.desiredHash;
  const progressing = (s: UnitState) => updated(s) && s.liveHash !== undefined && !s.done;

  // A halt belongs to one target: a new change clears it.
  let halt = input.halt && input.halt.target === target ? input.halt : undefined;
  if (!halt) {
    const failing = input.units.filter((s) => s.liveHash !== undefined && s.liveHash === s.desiredHash && s.failed);
    const first = failing.sort((a, b) => waveOf.get(a.unit)! - waveOf.get(b.unit)! || (a.unit < b.unit ? -1 : 1))[0];
    // A unit whose desired object equals the stable one did not change: its failure is not the rollout's.
    if (first && first.desiredHash !== first.stableHash)
      halt = { target, unit: first.unit, message: `unit ${JSON.stringify(first.unit)}: ${first.failure ?? 'did not become available'}` };
  }

  let currentWave = waves.length;
  for (const [i, w] of waves.entries()) {
    if (w.some((u) => !(updated(byUnit.get(u)!) && byUnit.get(u)!.done))) {
      currentWave = i;
      break;
    }
  }

  const actions = new Map<string, UnitAction>();
  let inProgress = input.units.filter(progressing).length;
  for (const s of input.units) {
    if (updated(s)) actions.set(s.unit, 'apply');
    else actions.set(s.unit, 'hold');
  }
  if (halt) {
    if (settings.rollback === 'Auto')
      for (const s of input.units)
        if (s.stableHash !== undefined && s.liveHash !== undefined && s.desiredHash !== s.stableHash)
          if (s.liveHash === s.desiredHash || s.liveHash === s.stableHash) actions.set(s.unit, 'rollback');
  } else if (!settings.pause && currentWave < waves.length) {
    for (const u of waves[currentWave]!) {
      if (inProgress >= limit) break;
      const s = byUnit.get(u)!;
      if (updated(s)) continue;
      actions.set(u, 'apply');
      inProgress++;
    }
  }

  const units = [...input.units]
    .sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0))
    .map((s): UnitPlan => {
      const action = actions.get(s.unit)!;
      const onTarget = updated(s) || action === 'apply';
      let phase: UnitPhase;
      if (action === 'rollback') phase = 'rolledBack';
      else if (onTarget && s.liveHash === s.desiredHash && s.failed) phase = 'failed';
      else if (onTarget && s.liveHash === s.desiredHash && s.done) phase = 'updated';
      else if (onTarget && s.liveHash === undefined) phase = 'progressing';
      else if (onTarget) phase = 'progressing';
      else phase = 'pending';
      return { unit: s.unit, action, phase, wave: waveOf.get(s.unit)! };
    });
  const counts = { updated: 0, progressing: 0, pending: 0, failed: 0, rolledBack: 0 };
  for (const u of units) counts[u.phase]++;
  return {
    units,
    currentWave,
    waveCount: waves.length,
    currentWaveUnits: waves[currentWave] ?? [],
    halt,
    complete: !halt && counts.updated === units.length,
    limit,
    counts,
  };
}
