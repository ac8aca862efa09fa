// DeploymentGrid rendering: grid + unit set → one desired Deployment per unit, or a per-unit
// error. Pure: no I/O, no clock.

import type { V1Deployment, V1DeploymentSpec, V1LabelSelector, V1PodTemplateSpec } from '@kubernetes/client-node';
import fastJsonPatch from 'fast-json-patch';
import {
  type DeploymentGrid,
  type DeploymentGridOverride,
  LABEL_GRID,
  LABEL_UNIT,
  REASON_INVALID_OVERRIDE,
  REASON_INVALID_TEMPLATE,
  REASON_NAME_COLLISION,
} from '../api/v1alpha1.ts';
import { chooseTemplate, clone, controllerRef, type GridLike, gridLabels, once, withRenderHash } from './common.ts';
import { assignNames, unitDeploymentName } from './names.ts';

export interface UnitError {
  reason: string;
  message: string;
}

/**
 * Applies the grid's overrides for `unit` to a copy of `spec` (a Deployment's or a StatefulSet's).
 * Throws with a message on failure.
 */
export function applyOverrides<S extends { replicas?: number; template?: object }>(
  grid: { spec: { overrides?: DeploymentGridOverride[] } },
  unit: string,
  spec: S,
): S {
  let out = spec;
  for (const [i, override] of (grid.spec.overrides ?? []).entries()) {
    if (!override.units?.includes(unit)) continue;
    if (override.replicas !== undefined && override.replicas !== null) out = { ...out, replicas: override.replicas };
    if (override.patch?.length) {
      try {
        out = fastJsonPatch.applyPatch(clone(out), clone(override.patch) as fastJsonPatch.Operation[], true, true).newDocument;
      } catch (err) {
        const e = err as Error & { index?: number; operation?: { op?: string; path?: string } };
        const at = e.index !== undefined ? `[${e.index}] (${e.operation?.op} ${e.operation?.path})` : '';
        throw new Error(`overrides[${i}].patch${at}: ${e.message.split('\n')[0]}`);
      }
    }
  }
  if (!out || typeof out !== 'object' || !out.template || typeof out.template !== 'object') {
    throw new Error('overrides leave no pod template');
  }
  return out;
}

/** A workload spec (Deployment or StatefulSet): the parts a grid pins to a unit. */
export interface WorkloadSpec {
  replicas?: number;
  selector: V1LabelSelector;
  template: V1PodTemplateSpec;
}

/** The unit's workload: the chosen spec pinned to the unit's nodes and labelled with the unit. */
export function renderUnitWorkload<S extends WorkloadSpec, W>(
  kind: 'Deployment' | 'StatefulSet',
  grid: GridLike<S> & { spec: { gridUniqKey: string } },
  unit: string,
  name: string,
  spec: S,
): W {
  const key = grid.spec.gridUniqKey;
  const unitLabels = { [LABEL_GRID]: grid.metadata.name!, [LABEL_UNIT]: unit };
  const s = clone(spec);
  const podMeta = s.template.metadata ?? {};
  const podSpec = s.template.spec ?? { containers: [] };
  return withRenderHash({
    apiVersion: 'apps/v1',
    kind,
    metadata: {
      name,
      namespace: grid.metadata.namespace,
      labels: gridLabels(grid, unit),
      ownerReferences: [controllerRef(grid)],
    },
    spec: {
      ...s,
      selector: { ...s.selector, matchLabels: { ...s.selector?.matchLabels, ...unitLabels } },
      template: {
        ...s.template,
        metadata: { ...podMeta, labels: { ...podMeta.labels, ...unitLabels } },
        spec: { ...podSpec, nodeSelector: { ...podSpec.nodeSelector, [key]: unit } },
      },
    },
  }) as W;
}

export function renderUnitDeployment(grid: DeploymentGrid, unit: string, name: string, spec: V1DeploymentSpec): V1Deployment {
  return renderUnitWorkload<V1DeploymentSpec, V1Deployment>('Deployment', grid, unit, name, spec);
}

export interface RenderedUnitWorkload<W> {
  unit: string;
  /** Object name; empty when no name could be assigned. */
  name: string;
  template: string;
  object?: W;
  error?: UnitError;
}

/**
 * One workload per unit: names, template choice, overrides, pinning; or the unit's error. Names
 * and templates are chosen at once (a name may depend on the whole unit set); each unit's
 * overrides and object are computed when its `object` or `error` is first read.
 */
export function renderWorkloadGrid<S extends WorkloadSpec, W>(
  kind: 'Deployment' | 'StatefulSet',
  grid: GridLike<S> & { spec: { gridUniqKey: string; overrides?: DeploymentGridOverride[] } },
  units: readonly string[],
  nameOf: (grid: string, unit: string) => string,
  /** Kind-specific defaults applied to each unit's spec after the overrides. */
  finish: (spec: S) => S = (spec) => spec,
): RenderedUnitWorkload<W>[] {
  const gridName = grid.metadata.name!;
  const names = assignNames(units, (u) => nameOf(gridName, u));
  return [...units].sort().map((unit): RenderedUnitWorkload<W> => {
    const assigned = names.get(unit)!;
    const choice = chooseTemplate(grid, unit);
    if ('error' in assigned)
      return { unit, name: '', template: choice.name, error: { reason: REASON_NAME_COLLISION, message: assigned.error } };
    const { name } = assigned;
    if ('error' in choice) return { unit, name, template: choice.name, error: { reason: REASON_INVALID_TEMPLATE, message: choice.error } };
    const { template } = choice;
    // Overrides (which may fail) and the object itself are computed when first read.
    const built = once((): { object?: W; error?: UnitError } => {
      let spec: S;
      try {
        spec = finish(applyOverrides(grid, unit, template));
      } catch (err) {
        return { error: { reason: REASON_INVALID_OVERRIDE, message: (err as Error).message } };
      }
      return { object: renderUnitWorkload<S, W>(kind, grid, unit, name, spec) };
    });
    return {
      unit,
      name,
      template: choice.name,
      get object() {
        return built().object;
      },
      get error() {
        return built().error;
      },
    };
  });
}

export type RenderedUnitDeployment = RenderedUnitWorkload<V1Deployment>;

export function renderDeploymentGrid(grid: DeploymentGrid, units: readonly string[]): RenderedUnitDeployment[] {
  // A rollout's per-unit deadline is the Deployment's own: its controller reports ProgressDeadlineExceeded.
  const deadline = grid.spec.rollout?.progressDeadlineSeconds;
  const withDeadline = (spec: V1DeploymentSpec) =>
    spec.progressDeadlineSeconds === undefined && deadline !== undefined ? { ...spec, progressDeadlineSeconds: deadline } : spec;
  return renderWorkloadGrid<V1DeploymentSpec, V1Deployment>('Deployment', grid, units, unitDeploymentName, withDeadline);
}

/** Units named in `overrides` that are not among `units`, with the indexes of the overrides naming them. */
export function unknownOverrideUnits(
  grid: { spec: Pick<DeploymentGrid['spec'], 'overrides'> },
  units: readonly string[],
): { unit: string; overrides: number[] }[] {
  const known = new Set(units);
  const unknown = new Map<string, number[]>();
  for (const [i, override] of (grid.spec.overrides ?? []).entries()) {
    for (const unit of override.units ?? []) {
      if (known.has(unit)) continue;
      const at = unknown.get(unit) ?? [];
      if (!at.includes(i)) at.push(i);
      unknown.set(unit, at);
    }
  }
  return [...unknown].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([unit, overrides]) => ({ unit, overrides }));
}
