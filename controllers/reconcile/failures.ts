// What the controller remembers about objects it could not write, so a grid that fails reaches a
// steady state with zero writes, like a healthy one:
// - an object the apiserver rejected (400/422) is not sent again while the input is the same:
//   same render hash, and the live object (if any) the same one at the same generation;
// - a name held by a foreign object is looked up (a read) instead of written to at each sync,
//   until the holder goes away or the grid stops wanting the name.

import type { KubeObject } from '../../kube/objects.ts';
import { ANNOTATION_RENDER_HASH } from '../api/v1alpha1.ts';

interface Rejection {
  input: string;
  message: string;
}

/** What an apply depends on besides the desired object: which live object, at which generation. */
function inputOf(desired: KubeObject, live: KubeObject | undefined): string {
  const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH] ?? '';
  return `${hash}|${live?.metadata?.uid ?? ''}|${live?.metadata?.generation ?? ''}`;
}

export class FailureMemory {
  /** object ref → the rejected input and the apiserver's message. */
  private readonly rejected = new Map<string, Rejection>();
  /** object refs whose name a foreign object held at the last look. */
  private readonly taken = new Set<string>();

  /** The message of an earlier rejection of exactly this input, if any. */
  rejection(ref: string, desired: KubeObject, live: KubeObject | undefined): string | undefined {
    const r = this.rejected.get(ref);
    return r && r.input === inputOf(desired, live) ? r.message : undefined;
  }

  rejectedNow(ref: string, desired: KubeObject, live: KubeObject | undefined, message: string): void {
    this.rejected.set(ref, { input: inputOf(desired, live), message });
  }

  isTaken(ref: string): boolean {
    return this.taken.has(ref);
  }

  takenNow(ref: string): void {
    this.taken.add(ref);
  }

  /** The object was written, found free, or is no longer wanted: nothing to remember. */
  clear(ref: string): void {
    this.rejected.delete(ref);
    this.taken.delete(ref);
  }
}
