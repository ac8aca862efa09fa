// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: a holder's lease is
// taken over only after it has not been renewed for leaseDuration as measured by our own clock
// (from when we last saw it change), and writes carry the resourceVersion read so two candidates
// cannot both win.
//
// The safety of the scheme rests on one timing argument: a leader must stop acting before any
// other replica can acquire. Another replica acquires no earlier than leaseDuration after the
// apiserver accepted our last renewal; we stop renewDeadline (< leaseDuration) after we *sent* it.
// So every request of an attempt is bounded by the time left to that deadline (a request on a
// hung connection would otherwise outlive it), and a timer fires at the deadline whatever the
// in-flight requests are doing.

import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { formatDuration } from '../kube/flags.ts';

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/**
 * client-go requires renewDeadline > 1.2 × retryPeriod (its retry jitter factor); the same rule
 * here lets a configuration carry over either way.
 */
const JITTER_FACTOR = 1.2;

/** The relations client-go's NewLeaderElector enforces; a message when the timings are unsafe. */
export function leaderElectionConfigProblem(c: Pick<LeaderElectionConfig, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>) {
  const lease = formatDuration(c.leaseDurationMs);
  const renew = formatDuration(c.renewDeadlineMs);
  const retry = formatDuration(c.retryPeriodMs);
  if (c.leaseDurationMs % 1000 !== 0) return `the lease duration (${lease}) must be a whole number of seconds (a Lease stores seconds)`;
  if (c.leaseDurationMs <= c.renewDeadlineMs) return `the lease duration (${lease}) must be greater than the renew deadline (${renew})`;
  if (c.renewDeadlineMs <= JITTER_FACTOR * c.retryPeriodMs)
    return `the renew deadline (${renew}) must be greater than ${JITTER_FACTOR} × the retry period (${retry})`;
  return undefined;
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
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly c: LeaderElectionConfig;
  /** The lease record as last read or written, and when (our clock) it last changed. */
  private observed?: { lease: Lease; holder: string; renewTime: string; at: number };
  private leading = false;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  /** While leading: when we stop acting unless a renewal sent before then succeeds. */
  private renewDeadlineAt = 0;

  constructor(client: KubeClient, log: Logger, config: LeaderElectionConfig) {
    const problem = leaderElectionConfigProblem(config);
    if (problem) throw new Error(`leader election: ${problem}`);
    this.client = client;
    this.c = config;
    this.log = log.child({ lease: `${config.namespace}/${config.name}`, identity: config.identity });
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.c.namespace}/leases/${this.c.name}`;
  }

  private spec(previous: Lease['spec'] | undefined, now: Date): Lease['spec'] {
    const mine = previous?.holderIdentity === this.c.identity;
    return {
      holderIdentity: this.c.identity,
      leaseDurationSeconds: this.c.leaseDurationMs / 1000,
      acquireTime: mine ? previous?.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (mine || !previous ? 0 : 1),
    };
  }

  private see(lease: Lease, now: number): void {
    const holder = lease.spec.holderIdentity ?? '';
    const renewTime = lease.spec.renewTime ?? '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime)
      this.observed = { lease, holder, renewTime, at: now };
    else this.observed.lease = lease;
  }

  /** One attempt, every request bounded by `signal`; true when we hold the lease afterwards. */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = new Date();
    // Fast path for a leader: update the record we wrote last without reading it first. A
    // conflict means someone else wrote it; the slow path then looks.
    if (this.leading && this.observed?.holder === this.c.identity) {
      const lease = this.observed.lease;
      try {
        const updated = await this.client.request<Lease>('PUT', this.path, {
          body: { ...lease, spec: this.spec(lease.spec, now) },
          signal,
        });
        this.see(updated, Date.now());
        return true;
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
      }
    }
    let lease: Lease | undefined;
    try {
      lease = await this.client.request<Lease>('GET', this.path, { signal });
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    if (!lease) {
      const created: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.c.name, namespace: this.c.namespace },
        spec: this.spec(undefined, now),
      };
      try {
        this.see(
          await this.client.request<Lease>('POST', `/apis/coordination.k8s.io/v1/namespaces/${this.c.namespace}/leases`, {
            body: created,
            signal,
          }),
          Date.now(),
        );
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    this.see(lease, now.getTime());
    const observed = this.observed!;
    const durationMs = (lease.spec.leaseDurationSeconds ?? this.c.leaseDurationMs / 1000) * 1000;
    if (observed.holder && observed.holder !== this.c.identity && now.getTime() < observed.at + durationMs) return false;
    try {
      const updated = await this.client.request<Lease>('PUT', this.path, { body: { ...lease, spec: this.spec(lease.spec, now) }, signal });
      this.see(updated, Date.now());
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /**
   * Campaigns until elected, then calls `onStarted` and keeps renewing. `onStopped` is called once,
   * at the latest at the renew deadline, if leadership is lost; the caller must stop acting at
   * once (exiting is simplest: caches and in-flight syncs may act on a stale view).
   */
  run(onStarted: () => void, onStopped: () => void): void {
    const lose = (reason: string) => {
      if (!this.leading) return;
      this.leading = false;
      this.stopped = true;
      clearTimeout(this.retryTimer);
      clearTimeout(this.deadlineTimer);
      this.log.error({ reason }, 'lost leadership');
      onStopped();
    };
    const attempt = async () => {
      if (this.stopped) return;
      const startedAt = Date.now();
      // A leader may use only the time left to its deadline; a candidate no more than a renew
      // deadline, so that a success always leaves it time to act before its first deadline.
      const budgetMs = this.leading ? this.renewDeadlineAt - startedAt : this.c.renewDeadlineMs;
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew(AbortSignal.timeout(Math.max(1, budgetMs)));
      } catch (err) {
        if (this.stopped) return;
        this.log.warn({ err, leading: this.leading }, 'lease request failed');
      }
      if (this.stopped) return;
      if (ok) {
        this.renewDeadlineAt = startedAt + this.c.renewDeadlineMs;
        clearTimeout(this.deadlineTimer);
        this.deadlineTimer = setTimeout(
          () => lose(`not renewed within the renew deadline (${this.c.renewDeadlineMs} ms)`),
          this.renewDeadlineAt - Date.now(),
        );
        if (!this.leading) {
          this.leading = true;
          this.log.info('became leader');
          onStarted();
        }
      } else if (this.leading && this.observed && this.observed.holder !== this.c.identity) {
        lose(`the lease is held by ${this.observed.holder || 'nobody'}`);
        return;
      }
      this.retryTimer = setTimeout(attempt, this.c.retryPeriodMs);
    };
    void attempt();
  }

  /** Stops campaigning; a leader gives the lease up so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.deadlineTimer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const signal = AbortSignal.timeout(Math.max(1, this.renewDeadlineAt - Date.now()));
      const lease = await this.client.request<Lease>('GET', this.path, { signal });
      if (lease.spec.holderIdentity !== this.c.identity) return;
      // As client-go releases: an empty holder and a one-second duration.
      await this.client.request('PUT', this.path, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() } },
        signal,
      });
      this.log.info('released the lease');
    } catch (err) {
      this.log.warn({ err }, 'could not release the lease');
    }
  }
}
