// The wrapper's Prometheus metrics, kept as plain numbers and rendered in the text format.
import { getHeapSpaceStatistics } from 'node:v8';
import { type Labels, MetricFamilies, type MetricType, type Sample } from '../kube/metrics-text.ts';
import type { ReflectorMetrics } from '../kube/reflector.ts';
import type { ServedMetrics } from './served.ts';
import type { StateMetrics } from './state.ts';
import type { ViewMetrics } from './view.ts';

export class WrapperMetrics implements ServedMetrics, ReflectorMetrics, ViewMetrics, StateMetrics {
  private readonly families = new MetricFamilies();

  /** Per-resource handles of the counters updated once per watch line. */
  private readonly perResource = new Map<string, { encoded: Sample; sent: Sample }>();

  private add(name: string, type: MetricType, help: string, labels: Labels, delta: number): void {
    this.families.add(name, type, help, labels, delta);
  }
  private resource(resource: string): { encoded: Sample; sent: Sample } {
    let r = this.perResource.get(resource);
    if (!r) {
      r = {
        encoded: this.families.sample(
          'servicegroup_wrapper_watch_events_encoded_total',
          'counter',
          'Watch lines encoded (once per event and wire type, however many watchers get it).',
          { resource },
        ),
        sent: this.families.sample('servicegroup_wrapper_watch_events_sent_total', 'counter', 'Watch lines written to watchers.', {
          resource,
        }),
      };
      this.perResource.set(resource, r);
    }
    return r;
  }
  private set(name: string, help: string, labels: Labels, value: number, type: MetricType = 'gauge'): void {
    this.families.set(name, type, help, labels, value);
  }

  encoded(resource: string): void {
    this.resource(resource).encoded.value++;
  }
  sent(resource: string): void {
    this.resource(resource).sent.value++;
  }
  slowWatcherClosed(resource: string): void {
    this.add(
      'servicegroup_wrapper_slow_watchers_closed_total',
      'counter',
      'Watches ended because the client did not read fast enough.',
      { resource },
      1,
    );
  }
  watchers(resource: string, delta: number): void {
    this.add('servicegroup_wrapper_watchers', 'gauge', 'Open watches.', { resource }, delta);
  }
  /** One object from upstream: a list item or a watch event. */
  received(resource: string): void {
    this.add(
      'servicegroup_wrapper_upstream_objects_received_total',
      'counter',
      'Objects received from the apiserver (list items and watch events): what the cluster costs this node.',
      { resource },
      1,
    );
  }
  relist(resource: string): void {
    this.add(
      'servicegroup_wrapper_upstream_relists_total',
      'counter',
      'Upstream relists after the initial list (410, restarts).',
      { resource },
      1,
    );
  }
  endpoints(kept: number, dropped: number): void {
    const help = 'Endpoints of topology-marked Services kept / dropped by the NodeUnit rule, now.';
    this.set('servicegroup_wrapper_endpoints', help, { decision: 'kept' }, kept);
    this.set('servicegroup_wrapper_endpoints', help, { decision: 'dropped' }, dropped);
  }
  requestRefused(reason: string): void {
    this.add('servicegroup_wrapper_requests_refused_total', 'counter', 'Requests answered 400/403 without serving them.', { reason }, 1);
  }
  listServed(resource: string): void {
    this.add('servicegroup_wrapper_list_requests_total', 'counter', 'List requests answered.', { resource }, 1);
  }
  stateWritten(bytes: number, seconds: number): void {
    this.add('servicegroup_wrapper_state_writes_total', 'counter', 'Snapshots of the state saved to disk.', {}, 1);
    this.add('servicegroup_wrapper_state_written_bytes_total', 'counter', 'Bytes of state snapshots written.', {}, bytes);
    this.set('servicegroup_wrapper_state_bytes', 'Size of the last saved snapshot.', {}, bytes);
    this.add(
      'servicegroup_wrapper_state_write_seconds_total',
      'counter',
      'Time spent encoding and writing snapshots durably.',
      {},
      seconds,
    );
    this.set('servicegroup_wrapper_state_saved_timestamp_seconds', 'When the last snapshot was saved (Unix time).', {}, Date.now() / 1000);
  }
  stateWriteFailed(): void {
    this.add(
      'servicegroup_wrapper_state_write_failures_total',
      'counter',
      'Saves of the state that failed (full or read-only disk): the wrapper serves from memory meanwhile.',
      {},
      1,
    );
  }
  setGauge(name: string, help: string, labels: Labels, value: number): void {
    this.set(name, help, labels, value);
  }

  /**
   * Process memory and CPU under the names Prometheus' Node.js client uses, read at scrape time:
   * the wrapper runs on every node, so its footprint is something operators watch.
   */
  sampleProcess(): void {
    const mem = process.memoryUsage();
    this.set('process_resident_memory_bytes', 'Resident memory size in bytes.', {}, mem.rss);
    this.set('nodejs_heap_size_used_bytes', 'V8 heap used in bytes.', {}, mem.heapUsed);
    this.set('nodejs_heap_size_total_bytes', 'V8 heap committed in bytes.', {}, mem.heapTotal);
    this.set('nodejs_external_memory_bytes', 'Memory of C++ objects bound to JavaScript objects (Buffers included).', {}, mem.external);
    this.set('nodejs_array_buffers_bytes', 'Memory of ArrayBuffers and Buffers.', {}, mem.arrayBuffers);
    for (const space of getHeapSpaceStatistics()) {
      const labels = { space: space.space_name.replace(/_space$/, '') };
      this.set('nodejs_heap_space_size_used_bytes', 'V8 heap space used in bytes.', labels, space.space_used_size);
      this.set('nodejs_heap_space_size_total_bytes', 'V8 heap space committed in bytes.', labels, space.space_size);
    }
    const cpu = process.cpuUsage();
    this.set('process_cpu_seconds_total', 'User and system CPU time spent in seconds.', {}, (cpu.user + cpu.system) / 1e6, 'counter');
  }

  render(): string {
    return this.families.render();
  }
}
