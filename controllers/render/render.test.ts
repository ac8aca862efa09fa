import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1DeploymentSpec, V1ServiceSpec } from '@kubernetes/client-node';
import { isDnsLabel } from '../../kube/names.ts';
import {
  ANNOTATION_RENDER_HASH,
  ANNOTATION_TOPOLOGY_KEYS,
  type DeploymentGrid,
  LABEL_GRID,
  LABEL_UNIT,
  type ServiceGrid,
} from '../api/v1alpha1.ts';
import { chooseTemplate, stableStringify } from './common.ts';
import { renderDeploymentGrid, unknownOverrideUnits } from './deployment.ts';
import {
  assignNames,
  MAX_DEPLOYMENT_GRID_NAME,
  MAX_DEPLOYMENT_NAME,
  MAX_SERVICE_GRID_NAME,
  shortHash,
  unitDeploymentName,
  unitNamePart,
  unitServiceName,
} from './names.ts';
import { renderServiceGrid } from './service.ts';

const podTemplate = (image: string): V1DeploymentSpec => ({
  replicas: 2,
  selector: { matchLabels: { app: 'web' } },
  template: {
    metadata: { labels: { app: 'web' } },
    spec: {
      nodeSelector: { disk: 'ssd' },
      tolerations: [{ key: 'edge', operator: 'Exists' }],
      containers: [{ name: 'web', image }],
    },
  },
});

function dg(spec: Partial<DeploymentGrid['spec']> = {}, name = 'web'): DeploymentGrid {
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'DeploymentGrid',
    metadata: { name, namespace: 'ns', uid: 'uid-1', generation: 1 },
    spec: { gridUniqKey: 'zone', template: podTemplate('nginx:1'), ...spec },
  };
}

function sg(spec: Partial<ServiceGrid['spec']> = {}, name = 'web'): ServiceGrid {
  const template: V1ServiceSpec = {
    type: 'NodePort',
    selector: { app: 'web' },
    ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
  };
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'ServiceGrid',
    metadata: { name, namespace: 'ns', uid: 'uid-2', generation: 1 },
    spec: { gridUniqKey: 'zone', template, ...spec },
  };
}

describe('names', () => {
  it('keeps a unit value that already is a short DNS label', () => {
    assert.equal(unitDeploymentName('web', 'site-17'), 'web-site-17');
    assert.equal(unitServiceName('web', 'site-17'), 'web-svc-site-17');
  });

  it('sanitises and hashes values with upper case, _ or .', () => {
    const a = unitDeploymentName('web', 'Zone_A');
    const b = unitDeploymentName('web', 'zone_a');
    const c = unitDeploymentName('web', 'zone-a');
    const d = unitDeploymentName('web', 'zone.a');
    assert.equal(a, `web-zone-a-${shortHash('Zone_A')}`);
    assert.equal(c, 'web-zone-a');
    assert.equal(new Set([a, b, c, d]).size, 4);
    for (const n of [a, b, c, d]) assert.ok(isDnsLabel(n), n);
  });

  it('is stable: the same value always gives the same name', () => {
    assert.equal(unitServiceName('g', 'Zone_A'), unitServiceName('g', 'Zone_A'));
  });

  it('fits 63-character values within the length limits', () => {
    const long = `A${'b'.repeat(61)}Z`;
    const long2 = `A${'b'.repeat(61)}Y`;
    assert.equal(long.length, 63);
    const d1 = unitDeploymentName('web', long);
    const d2 = unitDeploymentName('web', long2);
    assert.ok(d1.length <= MAX_DEPLOYMENT_NAME && isDnsLabel(d1), d1);
    assert.notEqual(d1, d2);
    const lower = 'a'.repeat(63);
    const s = unitServiceName('web', lower);
    assert.ok(s.length <= 63 && isDnsLabel(s), s);
    assert.notEqual(s, `web-svc-${lower}`);
    const longestGrid = 'g'.repeat(MAX_DEPLOYMENT_GRID_NAME);
    assert.ok(unitDeploymentName(longestGrid, long).length <= MAX_DEPLOYMENT_NAME);
    const longestSvcGrid = 'g'.repeat(MAX_SERVICE_GRID_NAME);
    assert.ok(unitServiceName(longestSvcGrid, long).length <= 63);
  });

  it('uses only the hash when nothing of the value survives sanitising', () => {
    assert.equal(unitNamePart('___', 20), `${shortHash('___')}`);
    assert.throws(() => unitNamePart('x', 3), /no room/);
  });

  it('reports rather than merges a value that equals another value hashed form', () => {
    const hashed = unitDeploymentName('web', 'Zone_A').slice('web-'.length);
    const names = assignNames(['Zone_A', hashed], (u) => unitDeploymentName('web', u));
    assert.deepEqual(names.get(hashed), { name: `web-${hashed}` });
    assert.match((names.get('Zone_A') as { error: string }).error, /collides/);
  });
});

describe('chooseTemplate', () => {
  const pool = { canary: podTemplate('nginx:2'), stable: podTemplate('nginx:1.5') };
  it('templates[unit] → pool entry, else defaultTemplateName, else template', () => {
    const grid = dg({ templatePool: pool, templates: { b: 'canary' }, defaultTemplateName: 'stable' });
    assert.equal(chooseTemplate(grid, 'b').name, 'canary');
    assert.equal(chooseTemplate(grid, 'a').name, 'stable');
    assert.equal(chooseTemplate(dg({ templatePool: pool, defaultTemplateName: 'default' }), 'a').name, 'default');
    assert.equal(chooseTemplate(dg({ templatePool: pool }), 'a').name, 'default');
  });
  it('names a missing pool entry as an error', () => {
    const c = chooseTemplate(dg({ templates: { a: 'nope' } }), 'a');
    assert.ok('error' in c && /nope/.test(c.error));
  });
});

describe('renderDeploymentGrid', () => {
  it('renders one pinned, labelled, owned Deployment per unit', () => {
    const out = renderDeploymentGrid(dg(), ['b', 'a']);
    assert.deepEqual(
      out.map((u) => u.unit),
      ['a', 'b'],
    );
    const d = out[0]!.object!;
    assert.equal(d.metadata!.name, 'web-a');
    assert.equal(d.metadata!.namespace, 'ns');
    assert.equal(d.metadata!.labels![LABEL_UNIT], 'a');
    assert.equal(d.metadata!.labels![LABEL_GRID], 'web');
    assert.deepEqual(d.metadata!.ownerReferences, [
      {
        apiVersion: 'servicegroup.io/v1alpha1',
        kind: 'DeploymentGrid',
        name: 'web',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.deepEqual(d.spec!.selector.matchLabels, { app: 'web', [LABEL_GRID]: 'web', [LABEL_UNIT]: 'a' });
    assert.deepEqual(d.spec!.template.metadata!.labels, { app: 'web', [LABEL_GRID]: 'web', [LABEL_UNIT]: 'a' });
    assert.deepEqual(d.spec!.template.spec!.nodeSelector, { disk: 'ssd', zone: 'a' });
    assert.deepEqual(d.spec!.template.spec!.tolerations, [{ key: 'edge', operator: 'Exists' }]);
    assert.equal(d.spec!.replicas, 2);
    assert.ok(d.metadata!.annotations![ANNOTATION_RENDER_HASH]);
  });

  it('keeps the raw value in labels and nodeSelector while the name is sanitised', () => {
    const [u] = renderDeploymentGrid(dg(), ['Zone_A']);
    assert.match(u!.name, /^web-zone-a-[0-9a-f]{8}$/);
    assert.equal(u!.object!.spec!.template.spec!.nodeSelector!.zone, 'Zone_A');
    assert.equal(u!.object!.spec!.template.metadata!.labels![LABEL_UNIT], 'Zone_A');
  });

  it('does not mutate the grid', () => {
    const grid = dg({ overrides: [{ units: ['a'], patch: [{ op: 'replace', path: '/template/spec/containers/0/image', value: 'x' }] }] });
    const before = JSON.stringify(grid);
    renderDeploymentGrid(grid, ['a', 'b']);
    assert.equal(JSON.stringify(grid), before);
  });

  it('hash changes with the template and only with it', () => {
    const h = (g: DeploymentGrid) => renderDeploymentGrid(g, ['a'])[0]!.object!.metadata!.annotations![ANNOTATION_RENDER_HASH];
    assert.equal(h(dg()), h(dg()));
    assert.notEqual(h(dg()), h(dg({ template: podTemplate('nginx:2') })));
  });

  it('uses the pool template for a canary unit', () => {
    const out = renderDeploymentGrid(dg({ templatePool: { canary: podTemplate('nginx:2') }, templates: { b: 'canary' } }), ['a', 'b']);
    assert.equal(out[0]!.template, 'default');
    assert.equal(out[0]!.object!.spec!.template.spec!.containers[0]!.image, 'nginx:1');
    assert.equal(out[1]!.template, 'canary');
    assert.equal(out[1]!.object!.spec!.template.spec!.containers[0]!.image, 'nginx:2');
  });

  it('applies replicas and RFC 6902 overrides in order to the named units only', () => {
    const out = renderDeploymentGrid(
      dg({
        overrides: [
          { units: ['b'], replicas: 5 },
          { units: ['b', 'c'], patch: [{ op: 'add', path: '/template/spec/containers/0/env', value: [{ name: 'X', value: '1' }] }] },
        ],
      }),
      ['a', 'b', 'c'],
    );
    const [a, b, c] = out.map((u) => u.object!.spec!);
    assert.equal(a!.replicas, 2);
    assert.equal(b!.replicas, 5);
    assert.equal(c!.replicas, 2);
    assert.equal(a!.template.spec!.containers[0]!.env, undefined);
    assert.deepEqual(b!.template.spec!.containers[0]!.env, [{ name: 'X', value: '1' }]);
    assert.deepEqual(c!.template.spec!.containers[0]!.env, [{ name: 'X', value: '1' }]);
  });

  it('fails only the unit whose patch fails', () => {
    const out = renderDeploymentGrid(
      dg({ overrides: [{ units: ['b'], patch: [{ op: 'replace', path: '/template/spec/nope/0', value: 1 }] }] }),
      ['a', 'b'],
    );
    assert.ok(out[0]!.object);
    assert.equal(out[1]!.object, undefined);
    assert.equal(out[1]!.error!.reason, 'InvalidOverride');
    assert.match(out[1]!.error!.message, /overrides\[0\]\.patch\[0\] \(replace \/template\/spec\/nope\/0\)/);
    const removed = renderDeploymentGrid(dg({ overrides: [{ units: ['a'], patch: [{ op: 'remove', path: '/template' }] }] }), ['a']);
    assert.match(removed[0]!.error!.message, /no pod template/);
  });

  it('renders a unit when its object is first read, once, as an eager render would', () => {
    const grid = dg({ overrides: [{ units: ['b'], replicas: 5 }] });
    const out = renderDeploymentGrid(grid, ['a', 'b']);
    const b = out[1]!.object!;
    assert.equal(out[1]!.object, b, 'read again: the same object, not a second render');
    assert.equal(out[1]!.error, undefined);
    assert.equal(b.spec!.replicas, 5);
    assert.equal(stableStringify(b), stableStringify(renderDeploymentGrid(grid, ['b', 'a'])[1]!.object));
    const services = renderServiceGrid(sg(), ['a']);
    assert.equal(services.sharedName, services.shared.metadata!.name);
    assert.equal(services.units[0]!.service, services.units[0]!.service);
  });

  it('the unit nodeSelector wins over a user value for the same key', () => {
    const t = podTemplate('x');
    t.template.spec!.nodeSelector = { zone: 'other' };
    const [u] = renderDeploymentGrid(dg({ template: t }), ['a']);
    assert.equal(u!.object!.spec!.template.spec!.nodeSelector!.zone, 'a');
  });
});

describe('renderServiceGrid', () => {
  it('renders the shared Service with the topology annotation and the template as is', () => {
    const { shared } = renderServiceGrid(sg({ topologyFallback: ['region', '*'] }), ['a']);
    assert.equal(shared.metadata!.name, 'web-svc');
    assert.equal(shared.metadata!.annotations![ANNOTATION_TOPOLOGY_KEYS], '["zone","region","*"]');
    assert.equal(shared.spec!.type, 'NodePort');
    assert.deepEqual(shared.spec!.selector, { app: 'web' });
    assert.equal(shared.spec!.ports![0]!.nodePort, 30080);
    assert.equal(shared.spec!.clusterIP, undefined);
    assert.equal(renderServiceGrid(sg(), []).shared.metadata!.annotations![ANNOTATION_TOPOLOGY_KEYS], '["zone"]');
  });

  it('renders headless per-unit Services selecting only the unit pods', () => {
    const { units } = renderServiceGrid(sg(), ['a', 'Zone_A']);
    const a = units.find((u) => u.unit === 'a')!;
    assert.equal(a.name, 'web-svc-a');
    assert.equal(a.service!.spec!.clusterIP, 'None');
    assert.equal(a.service!.spec!.type, 'ClusterIP');
    assert.deepEqual(a.service!.spec!.selector, { app: 'web', [LABEL_UNIT]: 'a' });
    assert.deepEqual(a.service!.spec!.ports, [{ name: 'http', port: 80, targetPort: 8080 }]);
    // Reachable from every unit, also in a Namespace that makes its Services unit-local.
    assert.equal(a.service!.metadata!.annotations![ANNOTATION_TOPOLOGY_KEYS], '[]');
    const z = units.find((u) => u.unit === 'Zone_A')!;
    assert.match(z.name, /^web-svc-zone-a-[0-9a-f]{8}$/);
    assert.equal(z.service!.metadata!.labels![LABEL_UNIT], 'Zone_A');
  });

  it('honours unitServices ClusterIP and None', () => {
    const ip = renderServiceGrid(sg({ unitServices: 'ClusterIP' }), ['a']).units[0]!;
    assert.equal(ip.service!.spec!.clusterIP, undefined);
    const none = renderServiceGrid(sg({ unitServices: 'None' }), ['a']).units[0]!;
    assert.equal(none.service, undefined);
    assert.equal(none.error, undefined);
  });

  it('reports a template without selector per unit', () => {
    const t = sg();
    delete t.spec.template.selector;
    assert.equal(renderServiceGrid(t, ['a']).units[0]!.error!.reason, 'InvalidTemplate');
  });
});

describe('unknownOverrideUnits', () => {
  it('names each unit no node carries once, with every override naming it, sorted', () => {
    const grid = dg({
      overrides: [
        { units: ['z', 'a'], replicas: 2 },
        { units: ['x', 'z', 'z'], replicas: 3 },
      ],
    });
    assert.deepEqual(unknownOverrideUnits(grid, ['a', 'b']), [
      { unit: 'x', overrides: [1] },
      { unit: 'z', overrides: [0, 1] },
    ]);
    assert.deepEqual(unknownOverrideUnits(dg(), ['a']), []);
  });
});
