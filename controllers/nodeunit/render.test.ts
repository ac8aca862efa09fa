import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { topologyKeysOf } from '../../wrapper/filter.ts';
import { matchesLabels } from '../../wrapper/selectors.ts';
import { CONDITION_CONFLICT, CONDITION_READY, type NodeUnit } from '../api/v1alpha1.ts';
import { shortHash } from '../render/names.ts';
import {
  ANNOTATION_NODE_LABELS,
  discoveredUnit,
  isDiscovered,
  keysInUse,
  labelsSettled,
  type NodeView,
  nodeLabelsApply,
  nodeUnitName,
  nodeUnitNames,
  nodeUnitStatus,
  ownedLabelKeys,
  planDiscovered,
  resolveClaims,
  selectorRequirements,
  statusPatch,
} from './render.ts';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function byName(nodes: NodeView[]): Map<string, NodeView> {
  return new Map(nodes.map((n) => [n.name, n]));
}

function node(name: string, labels: Record<string, string> = {}, ready = true, ownedLabels: string[] = []): NodeView {
  return { name, labels, ready, ownedLabels };
}

function declared(
  name: string,
  key: string,
  value: string,
  members: Partial<NodeUnit['spec']>,
  created = '2026-01-01T00:00:00Z',
): NodeUnit {
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'NodeUnit',
    metadata: { name, creationTimestamp: created as never, generation: 1 },
    spec: { key, value, ...members },
  };
}

describe('NodeUnit names', () => {
  it('is <key>.<value> when both are DNS labels', () => {
    assert.equal(nodeUnitName('zone', 'site-17'), 'zone.site-17');
  });

  it('is a valid, stable DNS subdomain of two labels for prefixed keys, dots, upper case and 63-character values', () => {
    const cases: [string, string][] = [
      ['topology.example.io/site', 'a'],
      ['zone', 'Zone_A'],
      ['zone', 'zone.a'],
      ['kubernetes.io/hostname', 'x'.repeat(63)],
      [`${'p'.repeat(253)}/${'n'.repeat(63)}`, `A${'_'.repeat(61)}Z`],
    ];
    for (const [key, value] of cases) {
      const name = nodeUnitName(key, value);
      assert.ok(name.length <= 253 && DNS_SUBDOMAIN.test(name), `${key}=${value} → ${name}`);
      const parts = name.split('.');
      assert.equal(parts.length, 2, name);
      for (const p of parts) assert.ok(p.length <= 63, name);
      assert.equal(nodeUnitName(key, value), name, 'stable');
    }
    assert.equal(nodeUnitName('topology.example.io/site', 'a'), `topology-example-io-site-${shortHash('topology.example.io/site')}.a`);
    assert.equal(nodeUnitName('zone', 'Zone_A'), `zone.zone-a-${shortHash('Zone_A')}`);
  });

  it('distinct pairs that sanitise alike get distinct names', () => {
    const pairs = [
      { key: 'zone', value: 'Zone_A' },
      { key: 'zone', value: 'zone_a' },
      { key: 'zone', value: 'zone.a' },
      { key: 'zone', value: 'zone-a' },
      { key: 'Zone', value: 'zone-a' },
      { key: 'a.b/zone', value: 'x' },
      { key: 'a-b/zone', value: 'x' },
    ];
    const names = nodeUnitNames(pairs);
    const assigned = [...names.values()].map((n) => ('name' in n ? n.name : assert.fail(n.error)));
    assert.equal(new Set(assigned).size, pairs.length);
  });

  it('a value that literally is another value’s hashed form is reported, never merged', () => {
    const hashed = `zone-a-${shortHash('Zone_A')}`;
    const names = nodeUnitNames([
      { key: 'zone', value: 'Zone_A' },
      { key: 'zone', value: hashed },
    ]);
    assert.ok([...names.values()].every((n) => 'error' in n && /collides/.test(n.error)));
  });
});

describe('keys in use', () => {
  it('grid keys and Service topology keys of both spellings, without "*"', () => {
    const svc = (annotations: Record<string, string>) => topologyKeysOf({ metadata: { name: 's', annotations } } as never);
    const keys = keysInUse(
      ['zone', undefined, 'zone'],
      [svc({ 'servicegroup.io/topology-keys': '["site","region","*"]' }), svc({ topologyKeys: '["rack"]' }), svc({ topologyKeys: 'nope' })],
    );
    assert.deepEqual([...keys].sort(), ['rack', 'region', 'site', 'zone']);
  });
});

describe('discovered units', () => {
  it('creates one per wanted pair, deletes those no longer wanted, leaves users’ units alone', () => {
    const stale = discoveredUnit('zone.old', 'zone', 'old');
    const kept = discoveredUnit('zone.a', 'zone', 'a');
    const users = declared('my-site', 'zone', 'b', { nodes: ['n1'] });
    const plain = declared('plain', 'zone', 'gone', {});
    const plan = planDiscovered(
      [stale, kept, users, plain],
      [
        { key: 'zone', value: 'a' },
        { key: 'zone', value: 'b' },
        { key: 'zone', value: 'c' },
      ],
    );
    assert.deepEqual(
      plan.create.map((u) => u.metadata.name),
      ['zone.c'],
    );
    assert.deepEqual(plan.remove, ['zone.old']);
    assert.deepEqual(plan.problems, []);
    assert.ok(isDiscovered(plan.create[0]!));
  });

  it('a discovered unit a user adds members to becomes declared and is not deleted', () => {
    const edited = { ...discoveredUnit('zone.a', 'zone', 'a'), spec: { key: 'zone', value: 'a', nodes: ['n1'] } };
    assert.equal(isDiscovered(edited), false);
    assert.deepEqual(planDiscovered([edited], []).remove, []);
  });

  it('a name held by a unit of another pair is a problem, not an overwrite', () => {
    const squatter = declared('zone.a', 'region', 'x', {});
    const plan = planDiscovered([squatter], [{ key: 'zone', value: 'a' }]);
    assert.deepEqual(plan.create, []);
    assert.match(plan.problems[0]!.message, /NodeUnit zone\.a exists for region=x/);
  });
});

describe('declared claims', () => {
  const nodes = [node('n1', { disk: 'ssd' }), node('n2', { disk: 'ssd' }), node('n3', { disk: 'hdd' })];

  it('nodes by name and by selector get key=value; unknown names are ignored', () => {
    const u = declared('site-a', 'site', 'a', { nodes: ['n3', 'missing'], nodeSelector: { matchLabels: { disk: 'ssd' } } });
    const { desired, conflicts } = resolveClaims([u], byName(nodes), matchesLabels);
    assert.deepEqual(Object.fromEntries(desired), { n1: { site: 'a' }, n2: { site: 'a' }, n3: { site: 'a' } });
    assert.equal(conflicts.size, 0);
  });

  it('a node claimed with two values of one key goes to the older unit; both report it; order of input does not matter', () => {
    const older = declared('site-a', 'site', 'a', { nodes: ['n1', 'n2'] }, '2026-01-01T00:00:00Z');
    const newer = declared('site-b', 'site', 'b', { nodes: ['n2', 'n3'] }, '2026-01-02T00:00:00Z');
    for (const units of [
      [older, newer],
      [newer, older],
    ]) {
      const { desired, conflicts } = resolveClaims(units, byName(nodes), matchesLabels);
      assert.deepEqual(Object.fromEntries(desired), { n1: { site: 'a' }, n2: { site: 'a' }, n3: { site: 'b' } });
      assert.match(
        conflicts.get('site-a')!.join(),
        /node n2 is also claimed by site-b \(site=b\); this unit claimed it first and keeps it/,
      );
      assert.match(conflicts.get('site-b')!.join(), /node n2 is kept by site-a \(site=a\), which claimed it first; not labelled site=b/);
    }
  });

  it('same creation time: the smaller name wins; same value or different keys are no conflict', () => {
    const t = '2026-01-01T00:00:00Z';
    const { desired, conflicts } = resolveClaims(
      [declared('b', 'site', 'y', { nodes: ['n1'] }, t), declared('a', 'site', 'x', { nodes: ['n1'] }, t)],
      byName(nodes),
      matchesLabels,
    );
    assert.equal(desired.get('n1')!.site, 'x');
    assert.equal(conflicts.size, 2);
    const calm = resolveClaims(
      [
        declared('a', 'site', 'x', { nodes: ['n1'] }),
        declared('a2', 'site', 'x', { nodes: ['n1'] }),
        declared('r', 'region', 'eu', { nodes: ['n1'] }),
      ],
      byName(nodes),
      matchesLabels,
    );
    assert.deepEqual(calm.desired.get('n1'), { site: 'x', region: 'eu' });
    assert.equal(calm.conflicts.size, 0);
  });

  it('created in the same second: the unit whose label the node already carries keeps it, so a newcomer never takes it over', () => {
    const t = '2026-01-01T00:00:00Z';
    const a = declared('a', 'site', 'x', { nodes: ['n1'] }, t);
    const b = declared('b', 'site', 'y', { nodes: ['n1'] }, t);
    const held = [node('n1', { site: 'y' }, true, ['site'])];
    assert.equal(resolveClaims([a, b], byName(held), matchesLabels).desired.get('n1')!.site, 'y');
    // A value someone else set does not count as a claim this controller made.
    const foreign = [node('n1', { site: 'y' }, true, [])];
    assert.equal(resolveClaims([a, b], byName(foreign), matchesLabels).desired.get('n1')!.site, 'x');
    // Created earlier beats holding.
    const older = declared('c', 'site', 'z', { nodes: ['n1'] }, '2025-12-31T23:59:59Z');
    assert.equal(resolveClaims([a, b, older], byName(held), matchesLabels).desired.get('n1')!.site, 'z');
  });

  it('units being deleted claim nothing', () => {
    const going = declared('site-a', 'site', 'a', { nodes: ['n1'] });
    going.metadata.deletionTimestamp = '2026-01-03T00:00:00Z' as never;
    assert.equal(resolveClaims([going], byName(nodes), matchesLabels).desired.size, 0);
  });

  it('selector expressions map onto label requirements', () => {
    const reqs = selectorRequirements({
      matchLabels: { a: '1' },
      matchExpressions: [
        { key: 'b', operator: 'In', values: ['x', 'y'] },
        { key: 'c', operator: 'DoesNotExist' },
      ],
    });
    assert.equal(matchesLabels(reqs, { a: '1', b: 'y' }), true);
    assert.equal(matchesLabels(reqs, { a: '1', b: 'y', c: '' }), false);
    assert.throws(() => selectorRequirements({ matchExpressions: [{ key: 'b', operator: 'Gt' as never }] }), /operator "Gt" is not one of/);
  });
});

describe('node labels the controller owns', () => {
  it('reads owned keys from the annotation applied with them; the apply body records them and releases all when empty', () => {
    assert.deepEqual(ownedLabelKeys({ [ANNOTATION_NODE_LABELS]: 'site,color' }), ['color', 'site']);
    assert.deepEqual(ownedLabelKeys(undefined), []);
    assert.deepEqual(nodeLabelsApply('n1', { site: 'a', color: 'red' }), {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n1', labels: { site: 'a', color: 'red' }, annotations: { [ANNOTATION_NODE_LABELS]: 'color,site' } },
    });
    assert.deepEqual(nodeLabelsApply('n1', {}), { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  });

  it('settled only when exactly the desired keys are owned with the desired values', () => {
    assert.equal(labelsSettled(node('n', { site: 'a' }, true, ['site']), { site: 'a' }), true);
    assert.equal(labelsSettled(node('n', { site: 'a' }, true, []), { site: 'a' }), false, 'set by someone else: we do not own it yet');
    assert.equal(labelsSettled(node('n', { site: 'b' }, true, ['site']), { site: 'a' }), false);
    assert.equal(labelsSettled(node('n', { site: 'a' }, true, ['site']), {}), false, 'must be released');
    assert.equal(labelsSettled(node('n', { zone: 'a' }, true, []), {}), true, 'labels of others are not ours to touch');
  });
});

describe('NodeUnit status', () => {
  it('members sorted, ready counts, grids, Ready condition; Conflict only on declared units', () => {
    const u = discoveredUnit('zone.a', 'zone', 'a');
    u.metadata.generation = 3;
    const s = nodeUnitStatus(u, [node('n2', {}, false), node('n1')], [{ kind: 'DeploymentGrid', namespace: 'x', name: 'web' }], undefined);
    assert.deepEqual(s.nodes, ['n1', 'n2']);
    assert.equal(s.nodeCount, 2);
    assert.equal(s.readyNodes, 1);
    assert.equal(s.notReadyNodes, 1);
    assert.equal(s.gridCount, 1);
    assert.equal(s.observedGeneration, 3);
    const ready = s.conditions!.find((c) => c.type === CONDITION_READY)!;
    assert.equal(ready.status, 'False');
    assert.equal(ready.reason, 'NodesNotReady');
    assert.equal(
      s.conditions!.find((c) => c.type === CONDITION_CONFLICT),
      undefined,
    );
    const d = declared('site-a', 'site', 'a', { nodes: ['n1'] });
    const ds = nodeUnitStatus(d, [], [], ['node n1 is claimed by older x']);
    const conflict = ds.conditions!.find((c) => c.type === CONDITION_CONFLICT)!;
    assert.equal(conflict.status, 'True');
    assert.match(conflict.message!, /claimed by older x/);
    assert.equal(ds.conditions!.find((c) => c.type === CONDITION_READY)!.reason, 'NoNodes');
  });

  it('an unchanged status keeps its condition times (no write on resync)', () => {
    const u = discoveredUnit('zone.a', 'zone', 'a');
    const first = nodeUnitStatus(u, [node('n1')], [], undefined);
    u.status = { ...first, conditions: first.conditions!.map((c) => ({ ...c, lastTransitionTime: '2020-01-01T00:00:00Z' as never })) };
    const again = nodeUnitStatus(u, [node('n1')], [], undefined);
    assert.deepEqual(again, u.status);
    // What the unit holds beyond the cache (a write not seen back yet) wins over the cached status.
    const held = { ...first, conditions: first.conditions!.map((c) => ({ ...c, lastTransitionTime: '2021-01-01T00:00:00Z' as never })) };
    assert.deepEqual(nodeUnitStatus(u, [node('n1')], [], undefined, held), held);
  });
});

describe('statusPatch', () => {
  it('sends only the fields that changed, nulls the ones that went away, and nothing when equal', () => {
    const old = { nodes: ['a', 'b'], nodeCount: 2, readyNodes: 2, gridCount: 1, grids: [{ kind: 'ServiceGrid', name: 'g' }] };
    const next = { nodes: ['a'], nodeCount: 1, readyNodes: 1, gridCount: 1, grids: [{ name: 'g', kind: 'ServiceGrid' }] };
    assert.deepEqual(statusPatch(old, next), { nodes: ['a'], nodeCount: 1, readyNodes: 1 });
    assert.deepEqual(statusPatch({ ...old, observedGeneration: 3 }, { ...old, observedGeneration: undefined }), {
      observedGeneration: null,
    });
    assert.deepEqual(statusPatch({}, { nodeCount: 0 }), { nodeCount: 0 });
    assert.equal(statusPatch(old, { ...old, grids: [{ name: 'g', kind: 'ServiceGrid' }] }), undefined);
  });
});
