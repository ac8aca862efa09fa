// A cache of one kind for the controller: a reflector's sink that keeps the objects (by key and by
// namespace) and calls handlers with add/update/delete and the previous object.

import type { Logger } from 'pino';
import type { KubeClient } from './client.ts';
import { type GroupVersionResource, type KubeObject, objectKey } from './objects.ts';
import { Reflector, type ReflectorOptions, type ReflectorSink } from './reflector.ts';

export type EventType = 'add' | 'update' | 'delete';
export type Handler<T> = (type: EventType, obj: T, old?: T) => void;

export class Informer<T extends KubeObject> implements ReflectorSink {
  private readonly log: Logger;
  private readonly reflector: Reflector;
  private readonly store = new Map<string, T>();
  private readonly byNamespace = new Map<string, Map<string, T>>();
  private readonly handlers: Handler<T>[] = [];
  /** The resource's plural name, for logs and health reports. */
  readonly name: string;

  constructor(client: KubeClient, resource: GroupVersionResource, log: Logger, options: ReflectorOptions = {}) {
    this.reflector = new Reflector(resource, client, this, log, options);
    this.log = log.child({ resource: resource.resource });
    this.name = resource.resource;
  }

  /** Resolves once the first list is in the cache. */
  get synced(): Promise<void> {
    return this.reflector.synced;
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.store.values()];
    return [...(this.byNamespace.get(namespace)?.values() ?? [])];
  }

  get size(): number {
    return this.store.size;
  }

  /** True while the last list/watch attempt failed. */
  get failing(): boolean {
    return this.reflector.failing;
  }

  /** Why this cache cannot be trusted (see Reflector.problem), or undefined. */
  problem(now: number, graceMs: number): string | undefined {
    return this.reflector.problem(now, graceMs);
  }

  /** Starts the list/watch loop in the background; await `synced` for the first list. */
  start(): void {
    this.reflector.start();
  }

  stop(): void {
    this.reflector.stop();
  }

  upsert(_resource: string, object: KubeObject): void {
    const obj = object as T;
    const key = objectKey(obj);
    const old = this.store.get(key);
    this.store.set(key, obj);
    const ns = obj.metadata.namespace ?? '';
    let inNamespace = this.byNamespace.get(ns);
    if (!inNamespace) this.byNamespace.set(ns, (inNamespace = new Map()));
    inNamespace.set(obj.metadata.name, obj);
    // A relist delivers every object again: unchanged ones are not news.
    if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.emit(old ? 'update' : 'add', obj, old);
  }

  delete(_resource: string, object: KubeObject): void {
    const key = objectKey(object);
    const old = this.store.get(key);
    this.store.delete(key);
    const ns = object.metadata.namespace ?? '';
    const inNamespace = this.byNamespace.get(ns);
    inNamespace?.delete(object.metadata.name);
    if (inNamespace?.size === 0) this.byNamespace.delete(ns);
    this.emit('delete', old ?? (object as T));
  }

  private emit(type: EventType, obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        this.log.error({ err, object: objectKey(obj) }, 'informer handler failed');
      }
    }
  }
}
