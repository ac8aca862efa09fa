// Turns the apiserver's OpenAPI v3 documents into CRD structural schemas for DeploymentGrid and
// ServiceGrid that embed the real DeploymentSpec/ServiceSpec, and for NodeUnit (whose
// nodeSelector is the real LabelSelector). Pure: documents in, CRDs out.

import { MAX_DEPLOYMENT_GRID_NAME, MAX_SERVICE_GRID_NAME, MAX_STATEFULSET_GRID_NAME } from '../controllers/render/names.ts';

type Schema = Record<string, any>;
interface OpenAPIDoc {
  components: { schemas: Record<string, Schema> };
}

const INT32: Schema = { type: 'integer', format: 'int32' };

/** Fields a CRD's JSONSchemaProps accepts (besides the recursion handled below). */
const ALLOWED = new Set([
  'description',
  'type',
  'format',
  'title',
  'maximum',
  'exclusiveMaximum',
  'minimum',
  'exclusiveMinimum',
  'maxLength',
  'minLength',
  'pattern',
  'maxItems',
  'minItems',
  'uniqueItems',
  'multipleOf',
  'enum',
  'maxProperties',
  'minProperties',
  'required',
  'items',
  'properties',
  'additionalProperties',
  'nullable',
  'default',
  'example',
  'allOf',
  'oneOf',
  'anyOf',
  'not',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-list-type',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
]);

const OBJECT_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta';
const QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity';
const INT_OR_STRING = 'io.k8s.apimachinery.pkg.util.intstr.IntOrString';

/** Pod template metadata inside a CR: only what a template can meaningfully carry. */
const EMBEDDED_META: Schema = {
  type: 'object',
  description: 'Labels and annotations of the pods made from this template.',
  properties: {
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

const CLAIM = 'io.k8s.api.core.v1.PersistentVolumeClaim';
/**
 * A StatefulSet claim template's metadata: its name is the first part of each claim's name
 * (`<name>-<statefulset>-<ordinal>`), so it is kept beside the labels and annotations.
 */
const CLAIM_TEMPLATE_META: Schema = {
  type: 'object',
  description: 'Name, labels and annotations of the claims made from this template.',
  properties: { name: { type: 'string' }, ...EMBEDDED_META.properties },
};

export class SchemaResolver {
  private readonly schemas: Record<string, Schema>;
  constructor(docs: OpenAPIDoc[]) {
    this.schemas = Object.assign({}, ...docs.map((d) => d.components.schemas));
  }

  /** The named schema with every $ref inlined and everything a CRD schema disallows removed. */
  resolve(name: string, options: { descriptions?: boolean } = {}): Schema {
    return pruneDefaults(this.walk({ $ref: `#/components/schemas/${name}` }, [], options.descriptions ?? true));
  }

  private walk(s: Schema, stack: string[], descriptions: boolean): Schema {
    // `{allOf: [{$ref}], description, default}` is OpenAPI v3's way of annotating a reference.
    if (Array.isArray(s.allOf) && s.allOf.length === 1 && s.allOf[0].$ref) {
      const { allOf, ...rest } = s;
      return this.walk({ ...rest, $ref: allOf[0].$ref }, stack, descriptions);
    }
    if (s.$ref) {
      const name = String(s.$ref).replace('#/components/schemas/', '');
      const { $ref: _ref, ...annotations } = s;
      const description = descriptions ? annotations.description : undefined;
      let target: Schema;
      if (name === OBJECT_META) target = stack.at(-1) === CLAIM ? CLAIM_TEMPLATE_META : EMBEDDED_META;
      else if (name === QUANTITY)
        target = {
          anyOf: [{ type: 'integer' }, { type: 'string' }],
          pattern:
            this.schemas[QUANTITY]?.pattern ??
            '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$',
          'x-kubernetes-int-or-string': true,
        };
      else if (name === INT_OR_STRING) target = { 'x-kubernetes-int-or-string': true };
      else {
        if (stack.includes(name)) throw new Error(`recursive schema ${name} cannot be embedded`);
        const found = this.schemas[name];
        if (!found) throw new Error(`schema ${name} not found in the OpenAPI documents`);
        target = this.walk(found, [...stack, name], descriptions);
      }
      const out: Schema = { ...target };
      if (description) out.description = description;
      if (annotations.default !== undefined && isScalar(annotations.default)) out.default = annotations.default;
      return out;
    }
    const out: Schema = {};
    for (const [k, v] of Object.entries(s)) {
      if (!ALLOWED.has(k)) continue;
      if (k === 'description' && !descriptions) continue;
      // Object defaults ({}) would be materialised into every grid and need not validate; scalar
      // defaults stay: list-map keys (e.g. a port's protocol) must be required or defaulted.
      if (k === 'default' && !isScalar(v)) continue;
      if (k === 'properties')
        out.properties = Object.fromEntries(
          Object.entries(v as Schema).map(([p, ps]) => [p, this.walk(ps as Schema, stack, descriptions)]),
        );
      else if (k === 'items' || (k === 'additionalProperties' && typeof v === 'object'))
        out[k] = this.walk(v as Schema, stack, descriptions);
      else if (k === 'allOf' || k === 'oneOf' || k === 'anyOf') out[k] = (v as Schema[]).map((x) => this.walk(x, stack, descriptions));
      else out[k] = v;
    }
    if (out.format === 'int-or-string') {
      delete out.format;
      delete out.type;
      out['x-kubernetes-int-or-string'] = true;
    }
    if (out.properties && !out.type) out.type = 'object';
    return out;
  }
}

/**
 * Removes defaults except on list-map keys, which a CRD requires to be required or defaulted (e.g.
 * a port's protocol). Other defaults would be stored into every grid and some ("" for an enum)
 * do not even validate; the apiserver defaults the rendered objects anyway.
 */
export function pruneDefaults(s: Schema, keep = false, keepProperties: ReadonlySet<string> = new Set()): Schema {
  if (!s || typeof s !== 'object') return s;
  if (!keep) delete s.default;
  const required = new Set<string>(s.required ?? []);
  for (const [k, v] of Object.entries<Schema>(s.properties ?? {})) pruneDefaults(v, keepProperties.has(k) && !required.has(k));
  if (s.items) pruneDefaults(s.items, false, new Set<string>(s['x-kubernetes-list-map-keys'] ?? []));
  if (typeof s.additionalProperties === 'object') pruneDefaults(s.additionalProperties);
  for (const k of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(s[k])) for (const x of s[k] as Schema[]) pruneDefaults(x);
  return s;
}

function isScalar(v: unknown): boolean {
  return v === null || ['string', 'number', 'boolean'].includes(typeof v);
}

// ---------------------------------------------------------------------------------------------

const QUALIFIED_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?';
const DNS_SUBDOMAIN = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
const LABEL_KEY_RE = `^(${DNS_SUBDOMAIN}/)?${QUALIFIED_NAME}$`;

/** CEL: `self` (a string) is a qualified label key: optional DNS-subdomain prefix, name ≤ 63. */
function labelKeyRules(what: string): Schema[] {
  return [
    {
      rule: `self.matches('${LABEL_KEY_RE.replace(/\\/g, '\\\\')}')`,
      messageExpression: `'${what} ' + self + ' is not a valid label key: [prefix/]name, where name is alphanumeric with -, _ or . inside and prefix is a DNS subdomain'`,
    },
    {
      rule: "self.lastIndexOf('/') < 0 ? size(self) <= 63 : (size(self) - self.lastIndexOf('/') - 1 <= 63 && self.lastIndexOf('/') <= 253)",
      messageExpression: `'${what} ' + self + ' is too long: the name part may have at most 63 characters and the prefix at most 253'`,
    },
  ];
}

const TEMPLATE_NAME: Schema = { type: 'string', maxLength: 253 };

function gridCommon(template: Schema, poolTemplate: Schema, what: string): Schema {
  return {
    gridUniqKey: {
      type: 'string',
      minLength: 1,
      maxLength: 317,
      description: 'Node label key whose distinct values are the NodeUnits: one rendered object per value.',
      'x-kubernetes-validations': labelKeyRules('gridUniqKey'),
    },
    template: { ...template, description: `The ${what} every unit uses unless templates/defaultTemplateName choose a templatePool entry.` },
    templatePool: {
      type: 'object',
      maxProperties: 16,
      description: `Named alternative ${what}s, e.g. a canary, chosen per unit by templates or defaultTemplateName.`,
      additionalProperties: poolTemplate,
    },
    templates: {
      type: 'object',
      maxProperties: 1024,
      description: 'Unit value → name of the templatePool entry that unit uses.',
      additionalProperties: TEMPLATE_NAME,
    },
    defaultTemplateName: {
      ...TEMPLATE_NAME,
      description: 'templatePool entry for units not named in templates; empty or "default" means template.',
    },
  };
}

const POOL_RULES: Schema[] = [
  {
    rule: "!has(self.templates) || self.templates.all(u, self.templates[u] == 'default' || (has(self.templatePool) && self.templates[u] in self.templatePool))",
    message: 'every templates value must name a templatePool entry (or be "default")',
    fieldPath: '.templates',
    reason: 'FieldValueInvalid',
  },
  {
    rule: "!has(self.defaultTemplateName) || self.defaultTemplateName == '' || self.defaultTemplateName == 'default' || (has(self.templatePool) && self.defaultTemplateName in self.templatePool)",
    messageExpression: "'defaultTemplateName ' + self.defaultTemplateName + ' must be empty, \"default\" or a templatePool entry'",
    fieldPath: '.defaultTemplateName',
    reason: 'FieldValueInvalid',
  },
];

const CONDITIONS: Schema = {
  type: 'array',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  // The required fields and reason syntax of metav1.Condition, so generic tooling can rely on them.
  items: {
    type: 'object',
    required: ['type', 'status', 'reason', 'message', 'lastTransitionTime'],
    properties: {
      type: { type: 'string' },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
      reason: { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' },
      message: { type: 'string' },
      lastTransitionTime: { type: 'string', format: 'date-time' },
      observedGeneration: { type: 'integer', format: 'int64' },
    },
  },
};

function statusSchema(unitProps: Schema, extra: Schema = {}): Schema {
  return {
    type: 'object',
    properties: {
      ...extra,
      observedGeneration: { type: 'integer', format: 'int64' },
      service: { type: 'string', description: 'Name of the shared Service (ServiceGrid).' },
      totalUnits: INT32,
      readyUnits: INT32,
      units: {
        type: 'array',
        'x-kubernetes-list-type': 'atomic',
        items: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', description: 'Raw unit value.' },
            template: { type: 'string' },
            error: { type: 'string' },
            ...unitProps,
          },
        },
      },
      conditions: CONDITIONS,
    },
  };
}

function crd(
  kind: string,
  plural: string,
  short: string,
  spec: Schema,
  specRequired: string[],
  specRules: Schema[],
  rootRules: Schema[],
  status: Schema,
  columns: Schema[],
  description: string,
): Schema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.servicegroup.io` },
    spec: {
      group: 'servicegroup.io',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: [short], categories: ['servicegroup'] },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description,
              required: ['spec'],
              'x-kubernetes-validations': rootRules,
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: { type: 'object', required: specRequired, properties: spec, 'x-kubernetes-validations': specRules },
                status,
              },
            },
          },
        },
      ],
    },
  };
}

/** A non-empty list of NodeUnit values (label values: at most 63 characters). */
function unitValues(description: string): Schema {
  return { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string', maxLength: 63 }, description };
}

const ROLLOUT_SPEC: Schema = {
  type: 'object',
  description:
    'Roll template changes out unit by unit: waves in order, at most maxUnavailableUnits changing at once, halting on a unit that fails. Without it every unit changes at once.',
  properties: {
    maxUnavailableUnits: {
      'x-kubernetes-int-or-string': true,
      description:
        'Units that may be changing at once: a positive integer, or a percentage of the units like "25%" (rounded down, at least 1). Default 1.',
      'x-kubernetes-validations': [
        {
          rule: "type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",
          message: 'maxUnavailableUnits must be a positive integer or a percentage from 1% to 100%',
        },
      ],
    },
    waves: {
      type: 'array',
      maxItems: 64,
      description: 'Ordered waves; a wave starts when every unit of the waves before it is done. Units in no wave form a last wave.',
      items: {
        type: 'object',
        required: ['units'],
        properties: {
          units: unitValues('Unit values of this wave.'),
        },
      },
    },
    pause: { type: 'boolean', description: 'No further unit starts changing; units already changing finish.' },
    progressDeadlineSeconds: {
      type: 'integer',
      format: 'int32',
      minimum: 1,
      description:
        "Set as each unit Deployment's progressDeadlineSeconds unless the template sets one; a unit past it fails and halts the rollout.",
    },
    rollback: {
      type: 'string',
      enum: ['Auto', 'None'],
      description: 'Auto: a halted rollout returns its units to the last templates every unit ran. Default None.',
    },
  },
};

const ROLLOUT_STATUS: Schema = {
  type: 'object',
  properties: {
    target: { type: 'string', description: 'Hash of the current templates.' },
    summary: { type: 'string' },
    currentWave: INT32,
    waves: INT32,
    updatedUnits: INT32,
    progressingUnits: INT32,
    pendingUnits: INT32,
    failedUnits: INT32,
    rolledBackUnits: INT32,
    paused: { type: 'boolean' },
    halted: {
      type: 'object',
      properties: { target: { type: 'string' }, unit: { type: 'string' }, message: { type: 'string' } },
    },
    stable: {
      type: 'object',
      description: 'The templates every unit last ran: what rollback Auto returns to.',
      properties: {
        target: { type: 'string' },
        spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      },
    },
  },
};

const COMMON_COLUMNS: Schema[] = [
  { name: 'Key', type: 'string', jsonPath: '.spec.gridUniqKey', description: 'Node label key of the units.' },
  { name: 'Units', type: 'integer', jsonPath: '.status.totalUnits' },
  { name: 'Ready', type: 'integer', jsonPath: '.status.readyUnits' },
];
const TAIL_COLUMNS: Schema[] = [
  {
    name: 'Degraded',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Degraded")].reason',
    description: 'Why the grid is degraded.',
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

/** Per-unit overrides of a workload grid: replicas, then an RFC 6902 patch of the unit's `specKind`. */
function overridesSchema(specKind: string): Schema {
  return {
    type: 'array',
    maxItems: 256,
    description: `Per-unit changes applied in order after the template is chosen: replicas, then an RFC 6902 JSON patch of the ${specKind}.`,
    items: {
      type: 'object',
      required: ['units'],
      properties: {
        units: unitValues('Unit values this override applies to.'),
        replicas: { type: 'integer', format: 'int32', minimum: 0 },
        patch: {
          type: 'array',
          maxItems: 128,
          description: `RFC 6902 operations on the unit's ${specKind}, e.g. {op: replace, path: /template/spec/containers/0/image, value: app:2}.`,
          items: {
            type: 'object',
            required: ['op', 'path'],
            properties: {
              op: { type: 'string', enum: ['add', 'remove', 'replace', 'move', 'copy', 'test'] },
              path: { type: 'string', maxLength: 1024 },
              from: { type: 'string', maxLength: 1024 },
              value: { 'x-kubernetes-preserve-unknown-fields': true, description: 'Any JSON value.' },
            },
            'x-kubernetes-validations': [
              { rule: "self.path == '' || self.path.startsWith('/')", message: 'path must be a JSON pointer starting with /' },
              { rule: "!(self.op in ['move', 'copy']) || has(self.from)", message: 'move and copy need from' },
            ],
          },
        },
      },
    },
  };
}

export function buildCrds(docs: OpenAPIDoc[]): Schema[] {
  const r = new SchemaResolver(docs);
  const deploymentSpec = r.resolve('io.k8s.api.apps.v1.DeploymentSpec');
  // The pool's copies keep no descriptions: `kubectl explain` reads them from template, and the
  // CRD stays well under the apiserver's object size limit.
  const deploymentSpecBare = r.resolve('io.k8s.api.apps.v1.DeploymentSpec', { descriptions: false });
  const serviceSpec = r.resolve('io.k8s.api.core.v1.ServiceSpec');
  const serviceSpecBare = r.resolve('io.k8s.api.core.v1.ServiceSpec', { descriptions: false });

  const dg = crd(
    'DeploymentGrid',
    'deploymentgrids',
    'dg',
    {
      ...gridCommon(deploymentSpec, deploymentSpecBare, 'Deployment spec'),
      overrides: overridesSchema('DeploymentSpec'),
      rollout: ROLLOUT_SPEC,
    },
    ['gridUniqKey', 'template'],
    POOL_RULES,
    [
      {
        rule: `size(self.metadata.name) <= ${MAX_DEPLOYMENT_GRID_NAME}`,
        message: `a DeploymentGrid name may have at most ${MAX_DEPLOYMENT_GRID_NAME} characters, so that <grid>-<unit> Deployment (and pod) names fit`,
      },
    ],
    statusSchema(
      {
        deployment: { type: 'string' },
        replicas: INT32,
        readyReplicas: INT32,
        updatedReplicas: INT32,
        templateHash: { type: 'string', description: 'Render hash of the Deployment the unit runs.' },
        rollout: { type: 'string', description: 'With spec.rollout: updated, progressing, pending, failed or rolledBack.' },
      },
      { rollout: ROLLOUT_STATUS },
    ),
    [
      ...COMMON_COLUMNS,
      { name: 'Rollout', type: 'string', jsonPath: '.status.rollout.summary', description: 'Units updated/total, or Halted.' },
      ...TAIL_COLUMNS,
    ],
    "DeploymentGrid renders one Deployment per NodeUnit (distinct value of the node label gridUniqKey), pinned to that unit's nodes.",
  );

  const sg = crd(
    'ServiceGrid',
    'servicegrids',
    'sg',
    {
      ...gridCommon(serviceSpec, serviceSpecBare, 'Service spec'),
      topologyFallback: {
        type: 'array',
        maxItems: 8,
        items: { type: 'string', maxLength: 317 },
        description:
          'Node label keys tried in order when a node\'s own unit has no ready endpoint; "*" (last) means any endpoint. Empty: strict, no fallback.',
        'x-kubernetes-validations': [
          {
            rule: `self.all(k, k == '*' || k.matches('${LABEL_KEY_RE.replace(/\\/g, '\\\\')}'))`,
            message: 'topologyFallback entries must be label keys or "*"',
          },
          {
            rule: "!self.exists(k, k == '*') || (self[size(self) - 1] == '*' && self.filter(k, k == '*').size() == 1)",
            message: '"*" may appear once, as the last entry',
          },
        ],
      },
      unitServices: {
        type: 'string',
        enum: ['Headless', 'ClusterIP', 'None'],
        description: 'Per-unit Services <grid>-svc-<unit>: Headless (default: per-unit DNS, no ClusterIP), ClusterIP, or None.',
      },
    },
    ['gridUniqKey', 'template'],
    POOL_RULES,
    [
      {
        rule: `size(self.metadata.name) <= ${MAX_SERVICE_GRID_NAME} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')`,
        message: `a ServiceGrid name must be a DNS-1035 label (lower case letters, digits, -; starting with a letter) of at most ${MAX_SERVICE_GRID_NAME} characters, so that <grid>-svc-<unit> Service names are valid`,
      },
    ],
    statusSchema({ service: { type: 'string' }, readyEndpoints: INT32 }),
    [
      ...COMMON_COLUMNS.slice(0, 1),
      { name: 'Service', type: 'string', jsonPath: '.status.service' },
      ...COMMON_COLUMNS.slice(1),
      ...TAIL_COLUMNS,
    ],
    "ServiceGrid renders a shared Service (<grid>-svc) whose traffic stays in each node's NodeUnit, and one Service per NodeUnit.",
  );
  const statefulSetSpec = r.resolve('io.k8s.api.apps.v1.StatefulSetSpec');
  const statefulSetSpecBare = r.resolve('io.k8s.api.apps.v1.StatefulSetSpec', { descriptions: false });
  const stsg = crd(
    'StatefulSetGrid',
    'statefulsetgrids',
    'stsg',
    { ...gridCommon(statefulSetSpec, statefulSetSpecBare, 'StatefulSet spec'), overrides: overridesSchema('StatefulSetSpec') },
    ['gridUniqKey', 'template'],
    POOL_RULES,
    [
      {
        rule: `size(self.metadata.name) <= ${MAX_STATEFULSET_GRID_NAME}`,
        message: `a StatefulSetGrid name may have at most ${MAX_STATEFULSET_GRID_NAME} characters, so that <grid>-<unit> StatefulSet (and pod) names fit`,
      },
    ],
    statusSchema({
      statefulSet: { type: 'string' },
      replicas: INT32,
      readyReplicas: INT32,
      updatedReplicas: INT32,
    }),
    [...COMMON_COLUMNS, ...TAIL_COLUMNS],
    "StatefulSetGrid renders one StatefulSet per NodeUnit (distinct value of the node label gridUniqKey), pinned to that unit's nodes; its pods resolve as <grid>-<i>.<serviceName> inside each unit through the node's wrapper.",
  );
  return [dg, sg, nodeUnitCrd(r), stsg];
}

const LABEL_VALUE_RE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';

/** NodeUnit: cluster-scoped, one per (node label key, value); spec is the pair plus optional declared members. */
function nodeUnitCrd(r: SchemaResolver): Schema {
  const labelSelector = r.resolve('io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector');
  const spec: Schema = {
    type: 'object',
    required: ['key', 'value'],
    properties: {
      key: {
        type: 'string',
        minLength: 1,
        maxLength: 317,
        description: 'Node label key, e.g. zone or topology.example.io/site. Immutable.',
        'x-kubernetes-validations': labelKeyRules('key'),
      },
      value: {
        type: 'string',
        minLength: 1,
        maxLength: 63,
        pattern: LABEL_VALUE_RE,
        description: 'The label value the nodes of this unit share. Immutable.',
      },
      nodes: {
        type: 'array',
        maxItems: 10000,
        'x-kubernetes-list-type': 'set',
        items: { type: 'string', maxLength: 253 },
        description: 'Declared members by name: the controller labels each existing one key=value.',
      },
      nodeSelector: {
        ...labelSelector,
        description: 'Declared members by label: the controller labels each matching node key=value.',
        'x-kubernetes-validations': [
          {
            rule: 'size(self.?matchLabels.orValue({})) + size(self.?matchExpressions.orValue([])) > 0',
            message: 'nodeSelector must have matchLabels or matchExpressions (an empty selector would claim every node)',
          },
        ],
      },
    },
    'x-kubernetes-validations': [
      { rule: 'self.key == oldSelf.key && self.value == oldSelf.value', message: 'key and value are immutable: create another NodeUnit' },
    ],
  };
  const status: Schema = {
    type: 'object',
    properties: {
      observedGeneration: { type: 'integer', format: 'int64' },
      nodes: {
        type: 'array',
        'x-kubernetes-list-type': 'atomic',
        items: { type: 'string' },
        description: 'Names of the nodes labelled key=value, sorted.',
      },
      nodeCount: INT32,
      readyNodes: INT32,
      notReadyNodes: INT32,
      grids: {
        type: 'array',
        'x-kubernetes-list-type': 'atomic',
        description: 'Grids keyed on key: each runs a workload (or Service) in this unit. At most 50 are listed; gridCount counts all.',
        items: {
          type: 'object',
          required: ['kind', 'namespace', 'name'],
          properties: { kind: { type: 'string' }, namespace: { type: 'string' }, name: { type: 'string' } },
        },
      },
      gridCount: INT32,
      conditions: CONDITIONS,
    },
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'nodeunits.servicegroup.io' },
    spec: {
      group: 'servicegroup.io',
      names: {
        kind: 'NodeUnit',
        listKind: 'NodeUnitList',
        plural: 'nodeunits',
        singular: 'nodeunit',
        shortNames: ['nu'],
        categories: ['servicegroup'],
      },
      scope: 'Cluster',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Key', type: 'string', jsonPath: '.spec.key' },
            { name: 'Value', type: 'string', jsonPath: '.spec.value' },
            { name: 'Nodes', type: 'integer', jsonPath: '.status.nodeCount' },
            { name: 'Ready', type: 'integer', jsonPath: '.status.readyNodes' },
            { name: 'Grids', type: 'integer', jsonPath: '.status.gridCount', priority: 1 },
            { name: 'Conflict', type: 'string', jsonPath: '.status.conditions[?(@.type=="Conflict")].status', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'NodeUnit is one site: the nodes that share one value of a node label key. The controller creates one for every value of every key a grid or a topology annotation uses; a NodeUnit that names nodes (nodes, nodeSelector) makes the controller label them key=value.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec,
                status,
              },
            },
          },
        },
      ],
    },
  };
}
