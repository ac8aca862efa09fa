// Which cached objects carry a grid's label, kept up to date from the cache's events. A sync looks
// for objects of units that are gone among its own grid's objects, not among every object of the
// namespace (a hundred grids syncing after a new unit would otherwise scan all of them each).

import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { LABEL_GRID } from '../api/v1alpha1.ts';

function gridOf(obj: KubeObject | undefined): string | undefined {
  const grid = obj?.metadata?.labels?.[LABEL_GRID];
  return grid === undefined ? undefined : `${obj!.metadata!.namespace ?? ''}/${grid}`;
}

export class ObjectsByGrid {
  /** `<namespace>/<grid>` → names of the objects labelled with it. */
  private readonly names = new Map<string, Set<string>>();

  constructor(objects: Informer<KubeObject>) {
    objects.on((type, obj, old) => {
      const before = type === 'add' ? undefined : gridOf(old ?? obj);
      const after = type === 'delete' ? undefined : gridOf(obj);
      if (before !== undefined && before !== after) this.remove(before, obj.metadata.name);
      if (after !== undefined) this.add(after, obj.metadata.name);
    });
  }

  /** Names of the cached objects in `namespace` labelled with grid `grid`. */
  of(namespace: string, grid: string): string[] {
    return [...(this.names.get(`${namespace}/${grid}`) ?? [])];
  }

  private add(key: string, name: string): void {
    let names = this.names.get(key);
    if (!names) this.names.set(key, (names = new Set()));
    names.add(name);
  }

  private remove(key: string, name: string): void {
    const names = this.names.get(key);
    names?.delete(name);
    if (names?.size === 0) this.names.delete(key);
  }
}
