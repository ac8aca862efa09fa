// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: a holder's lease is
// taken over only after it has not been renewed for leaseDuration as measured by our own clock
// (from when we last saw it change), writes use resourceVersion so two candidates cannot both
// win, and a leader that cannot renew within renewDeadline steps down.

import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../kube/client.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  log: Logger;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly o: Required<LeaderElectionOptions>;
  private observed?: { holder: string; renewTime: string; at: number };
  private leading = false;
  private stopped = false;
  private lastRenew = 0;
  private timer?: NodeJS.Timeout;

  constructor(opts: LeaderElectionOptions) {
    this.o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.name}`;
  }

  /** One attempt; true when we hold the lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    const seconds = Math.max(1, Math.round(this.o.leaseDurationMs / 1000));
    let lease: Lease | undefined;
    try {
      lease = await this.o.client.get<Lease>(this.path);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    if (!lease) {
      const created: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.o.name, namespace: this.o.namespace },
        spec: {
          holderIdentity: this.o.identity,
          leaseDurationSeconds: seconds,
          acquireTime: microTime(),
          renewTime: microTime(),
          leaseTransitions: 0,
        },
      };
      try {
        await this.o.client.request('POST', `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`, { body: created });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const holder = lease.spec.holderIdentity ?? '';
    const renewTime = lease.spec.renewTime ?? '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, at: now };
    }
    const durationMs = (lease.spec.leaseDurationSeconds ?? seconds) * 1000;
    const mine = holder === this.o.identity;
    if (!mine && holder && now < this.observed.at + durationMs) return false;
    const spec: Lease['spec'] = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: seconds,
      acquireTime: mine ? lease.spec.acquireTime : microTime(),
      renewTime: microTime(),
      leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    try {
      const updated = await this.o.client.request<Lease>('PUT', this.path, { body: { ...lease, spec } });
      this.observed = { holder: this.o.identity, renewTime: updated.spec.renewTime ?? '', at: Date.now() };
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /**
   * Campaigns until elected, then calls `onStarted` and keeps renewing. `onStopped` is called once
   * if leadership is lost (the caller should exit: its caches may act on a stale view).
   */
  run(onStarted: () => void, onStopped: () => void): void {
    const tick = async () => {
      if (this.stopped) return;
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        this.o.log.warn({ err, lease: `${this.o.namespace}/${this.o.name}` }, 'lease request failed');
      }
      if (this.stopped) return;
      if (ok) {
        this.lastRenew = Date.now();
        if (!this.leading) {
          this.leading = true;
          this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity }, 'became leader');
          onStarted();
        }
      } else if (this.leading && Date.now() - this.lastRenew > this.o.renewDeadlineMs) {
        this.leading = false;
        this.o.log.error({ lease: `${this.o.namespace}/${this.o.name}` }, 'lost leadership');
        onStopped();
        return;
      }
      this.timer = setTimeout(tick, this.o.retryPeriodMs);
    };
    void tick();
  }

  /** Stops campaigning; a leader gives the lease up so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.o.client.get<Lease>(this.path);
      if (lease.spec.holderIdentity !== this.o.identity) return;
      await this.o.client.request('PUT', this.path, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() } },
      });
    } catch (err) {
      this.o.log.warn({ err }, 'could not release lease');
    }
  }
}
