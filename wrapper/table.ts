// The Table form of what the wrapper serves (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
// which `kubectl get` asks for: the same columns and cell text the kube-apiserver prints for these
// kinds, computed from the wrapper's (filtered) objects, so `kubectl get endpointslices -o wide`
// against a node's wrapper shows what that node routes to. Rendering is pure: objects in, table out.

import type { KubeObject } from '../kube/objects.ts';
import { QueryError } from './query.ts';
import type { ResourceSpec } from './resources.ts';
import type { WatchSink } from './watcher.ts';

export type TableVersion = 'meta.k8s.io/v1' | 'meta.k8s.io/v1beta1';
export type IncludeObject = 'None' | 'Metadata' | 'Object';

export interface TableColumn {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

/**
 * The Table version an Accept header asks for, or undefined when it asks for plain objects.
 * Media ranges are tried in order, as the apiserver does; the first the wrapper can serve wins.
 */
export function tableVersionOf(accept: string | undefined): TableVersion | undefined {
  for (const range of (accept ?? '').split(',')) {
    const [type, ...rawParams] = range.split(';').map((s) => s.trim());
    const params = Object.fromEntries(rawParams.map((p) => p.split('=').map((s) => s.trim())));
    if (params.as === undefined) {
      // A plain media type the wrapper serves (JSON, or */* for protobuf clients) ends the search.
      if (type === 'application/json' || type === '*/*' || type === 'application/*') return undefined;
      continue;
    }
    if (type !== 'application/json' || params.as !== 'Table' || params.g !== 'meta.k8s.io') continue;
    if (params.v === 'v1') return 'meta.k8s.io/v1';
    if (params.v === 'v1beta1') return 'meta.k8s.io/v1beta1';
  }
  return undefined;
}

/** The `includeObject` query parameter of a Table request (default Metadata, as the apiserver). */
export function includeObjectOf(params: URLSearchParams): IncludeObject {
  const v = params.get('includeObject');
  if (v === null || v === '') return 'Metadata';
  if (v === 'None' || v === 'Metadata' || v === 'Object') return v;
  throw new QueryError(`invalid value ${JSON.stringify(v)} for query parameter "includeObject": must be None, Metadata or Object`);
}

// Descriptions are the API documentation of the field each column shows, as the apiserver gives them.
const NAME_DOC =
  'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
const AGE_DOC =
  'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata';

const column = (name: string, description: string, extra: Partial<TableColumn> = {}): TableColumn => ({
  name,
  type: 'string',
  format: '',
  description,
  priority: 0,
  ...extra,
});
const nameColumn = column('Name', NAME_DOC, { format: 'name' });
const ageColumn = column('Age', AGE_DOC);

// biome-ignore lint/suspicious/noExplicitAny: API objects as served, read defensively
type Obj = KubeObject & Record<string, any>;

interface Printer {
  columns: TableColumn[];
  cells(obj: Obj, now: number): string[];
}

/**
 * Kubernetes' short human durations (the AGE column): seconds up to 2 minutes, then minutes,
 * hours, days and years with one finer unit while it still matters.
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.trunc(hours / 24)}d` : `${Math.trunc(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24)}d`;
  const years = Math.trunc(hours / 24 / 365);
  if (hours < 24 * 365 * 8) {
    const days = Math.trunc(hours / 24) % 365;
    return days === 0 ? `${years}y` : `${years}y${days}d`;
  }
  return `${years}y`;
}

const age = (obj: Obj, now: number) => {
  const created = obj.metadata.creationTimestamp;
  return typeof created === 'string' ? humanDuration(now - Date.parse(created)) : '<unknown>';
};

/** At most `max` entries, then "+ N more...", as the apiserver abbreviates long lists. */
function listWithMore(items: string[], total: number, max: number, empty: string): string {
  if (total > max) return `${items.slice(0, max).join(',')} + ${total - max} more...`;
  return items.length ? items.join(',') : empty;
}

const hostPort = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Label maps as `k=v,k2=v2` sorted by key, `<none>` when empty. */
const formatLabels = (m: Record<string, string> | undefined) =>
  Object.keys(m ?? {}).length
    ? Object.keys(m!)
        .sort()
        .map((k) => `${k}=${m![k]}`)
        .join(',')
    : '<none>';

function serviceExternalIP(svc: Obj): string {
  const externalIPs: string[] = svc.spec?.externalIPs ?? [];
  switch (svc.spec?.type) {
    case 'ClusterIP':
    case 'NodePort':
      return externalIPs.length ? externalIPs.join(',') : '<none>';
    case 'LoadBalancer': {
      const ingress: { ip?: string; hostname?: string }[] = svc.status?.loadBalancer?.ingress ?? [];
      const lb = [...new Set(ingress.map((i) => i.ip || i.hostname || '').filter(Boolean))].sort();
      if (externalIPs.length) return [...lb, ...externalIPs].join(',');
      return lb.length ? lb.join(',') : '<pending>';
    }
    case 'ExternalName':
      return svc.spec.externalName ?? '';
  }
  return '<unknown>';
}

const servicePrinter: Printer = {
  columns: [
    nameColumn,
    column(
      'Type',
      'type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is "None", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. "NodePort" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. "LoadBalancer" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. "ExternalName" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types',
    ),
    column(
      'Cluster-IP',
      'clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are "None", empty string (""), or a valid IP address. Setting this to "None" makes a "headless service" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies',
    ),
    column(
      'External-IP',
      'externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.',
    ),
    column(
      'Port(s)',
      'The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies',
    ),
    ageColumn,
    column(
      'Selector',
      'Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/',
      { priority: 1 },
    ),
  ],
  cells(svc, now) {
    const ports: { port: number; nodePort?: number; protocol?: string }[] = svc.spec?.ports ?? [];
    const portText = ports.map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol}` : `${p.port}/${p.protocol}`)).join(',');
    return [
      svc.metadata.name,
      svc.spec?.type ?? '',
      svc.spec?.clusterIPs?.[0] ?? '<none>',
      serviceExternalIP(svc),
      portText || '<none>',
      age(svc, now),
      formatLabels(svc.spec?.selector),
    ];
  },
};

const endpointSlicePrinter: Printer = {
  columns: [
    nameColumn,
    column(
      'AddressType',
      'addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.',
    ),
    column(
      'Ports',
      'ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates "all ports". Each slice may include a maximum of 100 ports.',
    ),
    column('Endpoints', 'endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.'),
    ageColumn,
  ],
  cells(slice, now) {
    const ports: { port?: number; name?: string }[] = slice.ports ?? [];
    const portNames = ports.map((p) => (p.port !== undefined && p.port !== null ? String(p.port) : (p.name ?? '*')));
    const addresses: string[] = (slice.endpoints ?? []).flatMap((e: { addresses?: string[] }) => e.addresses ?? []);
    return [
      slice.metadata.name,
      slice.addressType ?? '',
      listWithMore(portNames, portNames.length, 3, '<unset>'),
      listWithMore(addresses, addresses.length, 3, '<unset>'),
      age(slice, now),
    ];
  },
};

type Subset = { addresses?: { ip: string }[]; ports?: { port: number }[] };

function formatEndpoints(subsets: Subset[] | undefined): string {
  if (!subsets?.length) return '<none>';
  const list: string[] = [];
  let count = 0;
  for (const ss of subsets) {
    const addresses = ss.addresses ?? [];
    // A headless Service may have no ports: then addresses alone.
    const shown = ss.ports?.length ? ss.ports.flatMap((p) => addresses.map((a) => hostPort(a.ip, p.port))) : addresses.map((a) => a.ip);
    count += shown.length;
    list.push(...shown.slice(0, Math.max(0, 3 - list.length)));
  }
  return listWithMore(list, count, 3, '');
}

const endpointsPrinter: Printer = {
  columns: [
    nameColumn,
    column(
      'Endpoints',
      'The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.',
    ),
    ageColumn,
  ],
  cells: (ep, now) => [ep.metadata.name, formatEndpoints(ep.subsets), age(ep, now)],
};

const NODE_ROLE_PREFIX = 'node-role.kubernetes.io/';

function nodeStatus(node: Obj): string {
  const ready = (node.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');
  const status = [ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown'];
  if (node.spec?.unschedulable) status.push('SchedulingDisabled');
  return status.join(',');
}

function nodeRoles(node: Obj): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(node.metadata.labels ?? {})) {
    if (k.startsWith(NODE_ROLE_PREFIX) && k.length > NODE_ROLE_PREFIX.length) roles.add(k.slice(NODE_ROLE_PREFIX.length));
    else if (k === 'kubernetes.io/role' && v !== '') roles.add(v);
  }
  return roles.size ? [...roles].sort().join(',') : '<none>';
}

const nodeAddress = (node: Obj, type: string) =>
  (node.status?.addresses ?? []).find((a: { type: string }) => a.type === type)?.address ?? '<none>';

const NODE_ADDRESSES_DOC =
  "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

const nodePrinter: Printer = {
  columns: [
    nameColumn,
    column('Status', 'The status of the node'),
    column('Roles', 'The roles of the node'),
    ageColumn,
    column('Version', 'Kubelet Version reported by the node.'),
    column('Internal-IP', NODE_ADDRESSES_DOC, { priority: 1 }),
    column('External-IP', NODE_ADDRESSES_DOC, { priority: 1 }),
    column('OS-Image', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).', { priority: 1 }),
    column('Kernel-Version', "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", { priority: 1 }),
    column('Container-Runtime', 'ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).', {
      priority: 1,
    }),
  ],
  cells(node, now) {
    const info = node.status?.nodeInfo ?? {};
    return [
      node.metadata.name,
      nodeStatus(node),
      nodeRoles(node),
      age(node, now),
      info.kubeletVersion ?? '',
      nodeAddress(node, 'InternalIP'),
      nodeAddress(node, 'ExternalIP'),
      info.osImage || '<unknown>',
      info.kernelVersion || '<unknown>',
      info.containerRuntimeVersion || '<unknown>',
    ];
  },
};

const serviceCIDRPrinter: Printer = {
  columns: [
    nameColumn,
    column(
      'CIDRs',
      'CIDRs defines the IP blocks in CIDR notation (e.g. "192.168.0.0/24" or "2001:db8::/64") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable.',
    ),
    ageColumn,
  ],
  cells: (cidr, now) => [cidr.metadata.name, (cidr.spec?.cidrs ?? []).join(','), age(cidr, now)],
};

const namespacePrinter: Printer = {
  columns: [nameColumn, column('Status', 'The status of the namespace'), ageColumn],
  cells: (namespace, now) => [namespace.metadata.name, namespace.status?.phase ?? '', age(namespace, now)],
};

const PRINTERS: Record<string, Printer> = {
  services: servicePrinter,
  endpointslices: endpointSlicePrinter,
  endpoints: endpointsPrinter,
  nodes: nodePrinter,
  servicecidrs: serviceCIDRPrinter,
  namespaces: namespacePrinter,
};

/** Whether the Table form of a resource can be printed (every served kind can; a test checks). */
export const hasTablePrinter = (resource: string) => resource in PRINTERS;

export interface TableOptions {
  version: TableVersion;
  includeObject: IncludeObject;
  /** Column definitions are sent once per response; watch events after the first omit them. */
  withColumns: boolean;
  now: number;
}

function rowObject(obj: Obj, opts: TableOptions): unknown {
  if (opts.includeObject === 'None') return null;
  if (opts.includeObject === 'Object') return obj;
  return { kind: 'PartialObjectMetadata', apiVersion: opts.version, metadata: obj.metadata };
}

/**
 * The Table of some served objects of one resource: a list (at the list's resourceVersion), or one
 * object (a get or a watch event, at the object's).
 */
export function renderTable(spec: ResourceSpec, objects: Obj[], resourceVersion: string | undefined, opts: TableOptions): object {
  const printer = PRINTERS[spec.resource];
  if (!printer) throw new Error(`no table printer for ${spec.resource}`);
  return {
    kind: 'Table',
    apiVersion: opts.version,
    metadata: resourceVersion === undefined ? {} : { resourceVersion },
    columnDefinitions: opts.withColumns ? printer.columns : null,
    rows: objects.map((o) => ({ cells: printer.cells(o, opts.now), object: rowObject(o, opts) })),
  };
}

/**
 * A watch response in the Table form: each event's object becomes a Table of one row, the first
 * one with the column definitions. BOOKMARK and ERROR events pass unchanged. Table watches are
 * for people (`kubectl get -w`), so each event is converted per watcher rather than shared.
 */
export function tableWatchSink(sink: WatchSink, spec: ResourceSpec, opts: Omit<TableOptions, 'withColumns' | 'now'>): WatchSink {
  let withColumns = true;
  return {
    write(line: Buffer): boolean {
      const event = JSON.parse(line.toString('utf8')) as { type: string; object: Obj };
      if (event.type === 'BOOKMARK' || event.type === 'ERROR') return sink.write(line);
      const table = renderTable(spec, [event.object], event.object.metadata.resourceVersion, { ...opts, withColumns, now: Date.now() });
      withColumns = false;
      return sink.write(Buffer.from(`${JSON.stringify({ type: event.type, object: table })}\n`));
    },
    end: () => sink.end(),
    cork: () => sink.cork?.(),
    uncork: () => sink.uncork?.(),
    get writableLength() {
      return sink.writableLength;
    },
    get writableEnded() {
      return sink.writableEnded;
    },
  };
}

/** The JSON text of a Table of served objects given as their encoded JSON (one object: at its resourceVersion). */
export function tableOfEncoded(
  spec: ResourceSpec,
  items: readonly Buffer[],
  resourceVersion: string | undefined,
  opts: Omit<TableOptions, 'withColumns' | 'now'>,
): string {
  const objects = items.map((b) => JSON.parse(b.toString('utf8')) as Obj);
  const rv = resourceVersion ?? objects[0]?.metadata.resourceVersion;
  return JSON.stringify(renderTable(spec, objects, rv, { ...opts, withColumns: true, now: Date.now() }));
}
