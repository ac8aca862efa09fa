// Status conditions, built the same way for every grid kind. A condition keeps its
// lastTransitionTime while its status does not change, and every message is built from sorted
// inputs, so an unchanged situation renders an identical status (and so no status write).

import type { V1Condition } from '@kubernetes/client-node';
import { CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, REASON_CONFLICT } from '../api/v1alpha1.ts';

/** A condition that keeps its lastTransitionTime while its status does not change. */
export function condition(
  old: V1Condition[] | undefined,
  type: string,
  status: boolean,
  reason: string,
  message: string,
  generation: number | undefined,
): V1Condition {
  const s = status ? 'True' : 'False';
  const prev = old?.find((c) => c.type === type);
  const lastTransitionTime =
    prev && prev.status === s ? prev.lastTransitionTime : (new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') as unknown as Date);
  return { type, status: s, reason, message, lastTransitionTime, observedGeneration: generation };
}

/**
 * `Ready`, the same for every grid kind: false with reason NoUnits while no node carries the key,
 * else true when every unit is ready (and nothing grid-wide is wrong).
 */
export function readyCondition(
  old: V1Condition[] | undefined,
  grid: { gridUniqKey: string; total: number; ready: number; gridWideOk?: boolean; what: string },
  generation: number | undefined,
): V1Condition {
  if (grid.total === 0) return condition(old, CONDITION_READY, false, 'NoUnits', `no node carries label ${grid.gridUniqKey}`, generation);
  const all = grid.ready === grid.total;
  return condition(
    old,
    CONDITION_READY,
    all && (grid.gridWideOk ?? true),
    all ? 'AllUnitsReady' : 'UnitsNotReady',
    `${grid.ready}/${grid.total} ${grid.what}`,
    generation,
  );
}

/** A problem of one unit; unit '' is the grid as a whole (e.g. a ServiceGrid's shared Service). */
export interface UnitProblem {
  unit: string;
  reason: string;
  message: string;
}

/** Orders problems by unit ('' first), so messages do not depend on which apply finished first. */
export function sortProblems(problems: UnitProblem[]): UnitProblem[] {
  return problems.sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0));
}

export function describeProblem(p: UnitProblem): string {
  return p.unit === '' ? `${p.reason}: ${p.message}` : `unit ${JSON.stringify(p.unit)}: ${p.reason}: ${p.message}`;
}

/**
 * `Degraded`, the same for every grid kind: true while any unit has a problem; the reason is a
 * Conflict if there is one (the case an operator must act on), else the first problem's.
 * `problems` must be sorted (sortProblems).
 */
export function degradedCondition(old: V1Condition[] | undefined, problems: UnitProblem[], generation: number | undefined): V1Condition {
  const degraded = problems.length > 0;
  const reason = (problems.find((p) => p.reason === REASON_CONFLICT) ?? problems[0])?.reason ?? 'AsExpected';
  const shown = problems.slice(0, 5).map(describeProblem);
  if (problems.length > 5) shown.push(`and ${problems.length - 5} more units`);
  return condition(old, CONDITION_DEGRADED, degraded, reason, shown.join('; '), generation);
}

/**
 * `Progressing`: true while units roll out; false with reason Complete only when every unit is
 * rolled out and none is blocked, else false with reason Blocked naming the units that cannot
 * roll out (their problem is in Degraded and in the unit's status).
 */
export function progressingCondition(
  old: V1Condition[] | undefined,
  progress: { moving: string[]; blocked: string[]; movingReason: string; movingWhat: string; doneMessage: string },
  generation: number | undefined,
): V1Condition {
  const { moving, blocked } = progress;
  const type = CONDITION_PROGRESSING;
  if (moving.length > 0) {
    const also = blocked.length > 0 ? `; blocked: ${listUnits(blocked)}` : '';
    return condition(old, type, true, progress.movingReason, `${progress.movingWhat} ${listUnits(moving)}${also}`, generation);
  }
  if (blocked.length > 0) {
    return condition(old, type, false, 'Blocked', `units ${listUnits(blocked)} cannot roll out (see Degraded)`, generation);
  }
  return condition(old, type, false, 'Complete', progress.doneMessage, generation);
}

/** Short text for a list of units in messages. */
export function listUnits(units: string[], max = 5): string {
  return listSome(
    units.map((u) => JSON.stringify(u)),
    max,
  );
}

/** The first `max` items, then how many more. */
export function listSome(items: string[], max: number): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} (and ${items.length - max} more)` : shown;
}
