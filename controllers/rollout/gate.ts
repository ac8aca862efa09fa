// The rollout gate of a DeploymentGrid sync: reads each unit's state from its live Deployment,
// asks the planner which units may change, and turns the plan into what the sync applies (the
// new render, nothing, or the render of the stable templates), the status block, the
// Progressing condition while halted or paused, and the events of the rollout.

import type { V1Condition } from '@kubernetes/client-node';
import type { KubeObject } from '../../kube/objects.ts';
import {
  ANNOTATION_RENDER_HASH,
  CONDITION_PROGRESSING,
  type DeploymentGrid,
  type DeploymentGridRolloutStatus,
  REASON_ROLLOUT_HALTED,
  REASON_ROLLOUT_PAUSED,
  type StableTemplates,
} from '../api/v1alpha1.ts';
import type { RenderedObject } from '../reconcile/grid-sync.ts';
import { sha256Hex, stableStringify } from '../render/common.ts';
import { renderDeploymentGrid } from '../render/deployment.ts';
import { type Plan, planRollout, type UnitState } from './plan.ts';

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface GateResult {
  rendered: RenderedObject[];
  fields?: Record<string, unknown>;
  /** Replaces the Progressing condition the sync would build. */
  progressing?: V1Condition;
  /** Extra fields of each unit's status entry, by unit. */
  unitFields?: Map<string, Record<string, unknown>>;
  events?: RolloutEvent[];
}

/** How the gate reads a unit's live object. */
export interface UnitHealth {
  done: boolean;
  failed: boolean;
  failure?: string;
}

/** Hash of what the units' objects are rendered from; a change of it is a new rollout target. */
export function templatesTarget(spec: DeploymentGrid['spec']): string {
  const { template, templatePool, templates, defaultTemplateName, overrides } = spec;
  return sha256Hex(stableStringify({ template, templatePool, templates, defaultTemplateName, overrides })).slice(0, 16);
}

function stableTemplates(spec: DeploymentGrid['spec'], target: string): StableTemplates {
  const { template, templatePool, templates, defaultTemplateName, overrides } = spec;
  return { target, spec: JSON.parse(JSON.stringify({ template, templatePool, templates, defaultTemplateName, overrides })) };
}

const hashOf = (o: KubeObject | undefined) => o?.metadata?.annotations?.[ANNOTATION_RENDER_HASH] as string | undefined;

export function gateRollout(
  grid: DeploymentGrid,
  rendered: RenderedObject[],
  /** The grid's live object of that name (what the sync would compare against), if any. */
  current: (name: string) => KubeObject | undefined,
  health: (live: KubeObject) => UnitHealth,
  condition: (type: string, status: boolean, reason: string, message: string) => V1Condition,
): GateResult {
  const rollout = grid.spec.rollout;
  if (!rollout) return { rendered };
  const prev = grid.status?.rollout;
  const target = templatesTarget(grid.spec);
  const gated = rendered.filter((r) => r.unit !== '' && r.desired && !r.error);
  const stable = prev?.stable;
  const stableRender = new Map<string, KubeObject>();
  if (stable && stable.target !== target) {
    const old = { ...grid, spec: { ...grid.spec, ...stable.spec } } as DeploymentGrid;
    for (const r of renderDeploymentGrid(
      old,
      gated.map((g) => g.unit),
    ))
      if (r.object && r.name) stableRender.set(r.unit, r.object as KubeObject);
  }
  const states: UnitState[] = gated.map((r) => {
    const live = current(r.name);
    const desiredHash = hashOf(r.desired)!;
    const h = live ? health(live) : { done: false, failed: false };
    return {
      unit: r.unit,
      desiredHash,
      stableHash: stable ? (stable.target === target ? desiredHash : hashOf(stableRender.get(r.unit))) : undefined,
      liveHash: live ? (hashOf(live) ?? '') : undefined,
      ...h,
    };
  });
  const plan = planRollout({
    target,
    settings: {
      maxUnavailableUnits: rollout.maxUnavailableUnits ?? 1,
      waves: (rollout.waves ?? []).map((w) => w.units ?? []),
      pause: rollout.pause ?? false,
      rollback: rollout.rollback ?? 'None',
    },
    units: states,
    halt: prev?.halted,
  });
  const actions = new Map(plan.units.map((u) => [u.unit, u]));
  const out = rendered.map((r): RenderedObject => {
    const a = actions.get(r.unit);
    if (!a || !gated.includes(r)) return r;
    if (a.action === 'hold') return { ...r, desired: undefined };
    if (a.action === 'rollback') return { ...r, desired: stableRender.get(r.unit) ?? r.desired };
    return r;
  });

  const total = plan.units.length;
  const status: DeploymentGridRolloutStatus = {
    target,
    summary: plan.halt ? 'Halted' : `${rollout.pause && !plan.complete ? 'Paused ' : ''}${plan.counts.updated}/${total}`,
    currentWave: plan.currentWave + 1,
    waves: plan.waveCount,
    updatedUnits: plan.counts.updated,
    progressingUnits: plan.counts.progressing,
    pendingUnits: plan.counts.pending,
    failedUnits: plan.counts.failed,
    rolledBackUnits: plan.counts.rolledBack,
    paused: rollout.pause ?? false,
    ...(plan.halt ? { halted: plan.halt } : {}),
    ...(plan.complete ? { stable: stableTemplates(grid.spec, target) } : stable ? { stable } : {}),
  };
  return {
    rendered: out,
    fields: { rollout: status },
    progressing: progressingOf(plan, rollout.pause ?? false, total, condition),
    unitFields: new Map(plan.units.map((u) => [u.unit, { rollout: u.phase }])),
    events: rolloutEvents(plan, prev, target, rollout.rollback === 'Auto'),
  };
}

function progressingOf(
  plan: Plan,
  paused: boolean,
  total: number,
  condition: (type: string, status: boolean, reason: string, message: string) => V1Condition,
): V1Condition | undefined {
  if (plan.halt)
    return condition(
      CONDITION_PROGRESSING,
      false,
      REASON_ROLLOUT_HALTED,
      `rollout halted: ${plan.halt.message}; no further unit changes until the templates change`,
    );
  if (paused && !plan.complete)
    return condition(
      CONDITION_PROGRESSING,
      false,
      REASON_ROLLOUT_PAUSED,
      `rollout paused with ${plan.counts.updated}/${total} units updated`,
    );
  return undefined;
}

/** Events on transitions against the status the grid shows: a wave starting, a halt, a rollback, completion. */
function rolloutEvents(plan: Plan, prev: DeploymentGridRolloutStatus | undefined, target: string, autoRollback: boolean): RolloutEvent[] {
  const events: RolloutEvent[] = [];
  const sameTarget = prev?.target === target;
  if (plan.halt && !(prev?.halted?.target === target)) {
    events.push({ type: 'Warning', reason: REASON_ROLLOUT_HALTED, message: `rollout halted: ${plan.halt.message}` });
    if (autoRollback && plan.counts.rolledBack > 0)
      events.push({
        type: 'Normal',
        reason: 'RollingBack',
        message: 'returning the units of the halted rollout to the last templates every unit ran',
      });
  }
  if (!plan.halt && !plan.complete && (!sameTarget || prev?.currentWave !== plan.currentWave + 1))
    events.push({
      type: 'Normal',
      reason: 'RolloutWave',
      message: `wave ${plan.currentWave + 1}/${plan.waveCount}: ${plan.currentWaveUnits
        .slice(0, 20)
        .map((u) => JSON.stringify(u))
        .join(', ')}${plan.currentWaveUnits.length > 20 ? ` and ${plan.currentWaveUnits.length - 20} more` : ''}`,
    });
  if (plan.complete && prev && !(sameTarget && prev.stable?.target === target))
    events.push({ type: 'Normal', reason: 'RolloutComplete', message: `every unit runs templates ${target}` });
  return events;
}
