// Pods stranded by a relabel: a Deployment's nodeSelector only matters when a pod is scheduled,
// so when a node moves to another NodeUnit the pods a unit's Deployment has there keep running
// in the wrong unit. They are found from a cache of the grids' pods and evicted through the
// Eviction API, so PodDisruptionBudgets are respected (a 429 means "not now") and the Deployment
// recreates them on a node of their own unit. Evictions are rate-limited controller-wide.

import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { resourcePath } from '../../kube/objects.ts';
import { LABEL_UNIT } from '../api/v1alpha1.ts';
import { PODS } from './resources.ts';

export interface MisplacedPod {
  name: string;
  node: string;
  /** The unit whose Deployment made the pod. */
  unit: string;
  /** The unit the node is in now; undefined when the node no longer carries the key. */
  nodeUnit: string | undefined;
  terminating: boolean;
  pod: KubeObject;
}

/**
 * Pods made by the Deployments in `deploymentOfUnit` (unit → Deployment name) that run on a node
 * whose value of `key` is no longer their unit. Pods not yet scheduled, or on nodes not in the
 * cache (deleted nodes: the pod garbage collector handles those), are not misplaced. Sorted by name.
 */
export function findMisplacedPods(
  pods: KubeObject[],
  deploymentOfUnit: Map<string, string>,
  key: string,
  nodeLabels: (node: string) => Record<string, string> | undefined,
): MisplacedPod[] {
  const out: MisplacedPod[] = [];
  for (const pod of pods) {
    const unit = pod.metadata?.labels?.[LABEL_UNIT] as string | undefined;
    const node = pod.spec?.nodeName as string | undefined;
    if (unit === undefined || !node) continue;
    const deployment = deploymentOfUnit.get(unit);
    if (!deployment || !madeBy(pod, deployment)) continue;
    const labels = nodeLabels(node);
    if (!labels || labels[key] === unit) continue;
    out.push({ name: pod.metadata!.name!, node, unit, nodeUnit: labels[key], terminating: !!pod.metadata?.deletionTimestamp, pod });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The pod's controller is a ReplicaSet of the Deployment (named `<deployment>-<hash>`). */
function madeBy(pod: KubeObject, deployment: string): boolean {
  const owner = (pod.metadata?.ownerReferences as { kind?: string; name?: string; controller?: boolean }[] | undefined)?.find(
    (r) => r.controller,
  );
  return owner?.kind === 'ReplicaSet' && !!owner.name?.startsWith(`${deployment}-`);
}

export type EvictionResult = 'evicted' | 'blocked' | 'limited' | 'gone';

export interface EvictorOptions {
  /** Evictions per second, controller-wide. */
  perSecond: number;
  burst: number;
}

export class Evictor {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly opts: EvictorOptions;
  private tokens: number;
  private refilledAt = Date.now();

  constructor(client: KubeClient, log: Logger, opts: EvictorOptions = { perSecond: 5, burst: 10 }) {
    this.client = client;
    this.log = log;
    this.opts = opts;
    this.tokens = opts.burst;
  }

  /** Milliseconds until the next eviction may be sent. */
  waitMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.opts.perSecond) * 1000);
  }

  /** Asks the apiserver to evict the pod; 'blocked' when a PodDisruptionBudget does not allow it now. */
  async evict(pod: KubeObject): Promise<EvictionResult> {
    this.refill();
    if (this.tokens < 1) return 'limited';
    this.tokens -= 1;
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    try {
      await this.client.request('POST', resourcePath(PODS, ns, name, 'eviction'), {
        body: {
          apiVersion: 'policy/v1',
          kind: 'Eviction',
          metadata: { name, namespace: ns },
          // Only the pod we looked at: a pod recreated under the same name is not ours to judge.
          deleteOptions: { preconditions: { uid: pod.metadata!.uid } },
        },
      });
      return 'evicted';
    } catch (err) {
      if (isStatus(err, 429)) return 'blocked';
      if (isStatus(err, 404) || isStatus(err, 409)) return 'gone';
      this.log.warn({ err, pod: `${ns}/${name}` }, 'eviction failed');
      return 'blocked';
    }
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.opts.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.opts.perSecond);
    this.refilledAt = now;
  }
}
