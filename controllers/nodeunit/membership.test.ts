import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeMembership } from './membership.ts';
import type { NodeView } from './render.ts';

function node(name: string, labels: Record<string, string> = {}, ready = true, ownedLabels: string[] = []): NodeView {
  return { name, labels, ready, ownedLabels };
}

const names = (views: readonly NodeView[]) => views.map((v) => v.name);

/** The grouping an index must agree with: every node, grouped from scratch. */
function fromScratch(views: NodeView[], key: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const v of views) {
    const value = v.labels[key];
    if (value !== undefined) m.set(value, [...(m.get(value) ?? []), v.name].sort());
  }
  return m;
}

describe('node membership', () => {
  it('groups nodes by the indexed keys; values are the distinct non-empty ones, sorted', () => {
    const m = new NodeMembership();
    m.reset([node('b', { zone: 'x' }), node('a', { zone: 'x' }), node('c', { zone: '' }), node('d', { zone: 'y', rack: '1' })]);
    m.indexKeys('t', new Set(['zone']));
    assert.deepEqual(names(m.members('zone', 'x')), ['a', 'b']);
    assert.deepEqual(names(m.members('zone', '')), ['c']);
    assert.deepEqual(m.pairs(['zone']), [
      { key: 'zone', value: 'x' },
      { key: 'zone', value: 'y' },
    ]);
    // A key indexed later is grouped from the nodes already known; a key dropped is forgotten.
    m.indexKeys('t', new Set(['rack']));
    assert.deepEqual(names(m.members('rack', '1')), ['d']);
    assert.deepEqual(names(m.members('zone', 'x')), []);
  });

  it('follows relabels, readiness and deletes, and reports only changes a unit reads', () => {
    const m = new NodeMembership();
    m.indexKeys('t', new Set(['zone']));
    assert.equal(m.set(node('n1', { zone: 'a' })), true);
    assert.equal(m.set(node('n2', { zone: 'a' })), true);
    const before = m.members('zone', 'a');
    // The same content again (a heartbeat): no change, and the member array stays the same one.
    assert.equal(m.set(node('n1', { zone: 'a' })), false);
    assert.equal(m.members('zone', 'a'), before);

    assert.equal(m.set(node('n1', { zone: 'b' })), true);
    assert.deepEqual(names(m.members('zone', 'a')), ['n2']);
    assert.deepEqual(names(m.members('zone', 'b')), ['n1']);

    assert.equal(m.set(node('n2', { zone: 'a' }, false)), true);
    assert.equal(m.members('zone', 'a')[0]!.ready, false);

    assert.equal(m.set(node('n2', { zone: 'a' }, false, ['zone'])), true);
    assert.deepEqual([...m.owning], ['n2']);

    assert.equal(m.delete('n2'), true);
    assert.equal(m.delete('n2'), false);
    assert.deepEqual(m.pairs(['zone']), [{ key: 'zone', value: 'b' }]);
    assert.deepEqual([...m.owning], []);
    assert.deepEqual([...m.nodes.keys()], ['n1']);
  });

  it('after any sequence of changes agrees with grouping every node from scratch', () => {
    const m = new NodeMembership();
    m.indexKeys('t', new Set(['zone']));
    const live = new Map<string, NodeView>();
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 2_000; step++) {
      const name = `n${rand(40)}`;
      if (rand(5) === 0) {
        m.delete(name);
        live.delete(name);
      } else {
        const labels: Record<string, string> = rand(4) === 0 ? {} : { zone: `z${rand(6)}`, other: `${rand(3)}` };
        const v = node(name, labels, rand(2) === 0);
        m.set(v);
        live.set(name, v);
      }
      if (step % 50 === 0) {
        const want = fromScratch([...live.values()], 'zone');
        const got = new Map(m.pairs(['zone']).map(({ value }) => [value, names(m.members('zone', value))]));
        assert.deepEqual(got, want, `after step ${step}`);
        for (const [value, members] of want)
          for (const v of m.members('zone', value)) assert.equal(v.ready, live.get(v.name)!.ready, `${value}/${members}`);
      }
    }
  });

  it('values: sorted, the same array until a value appears or goes; a key no user indexed is read from the nodes', () => {
    const m = new NodeMembership();
    m.indexKeys('grids', new Set(['zone']));
    m.set(node('n1', { zone: 'b', rack: '2' }));
    m.set(node('n2', { zone: 'a', rack: '1' }));
    const first = m.values('zone');
    assert.deepEqual(first, ['a', 'b']);
    // A member joining a value that exists, or readiness: the same array.
    m.set(node('n3', { zone: 'a' }));
    m.set(node('n3', { zone: 'a' }, false));
    assert.equal(m.values('zone'), first);
    m.set(node('n3', { zone: 'c' }));
    assert.deepEqual(m.values('zone'), ['a', 'b', 'c']);
    m.delete('n1');
    assert.deepEqual(m.values('zone'), ['a', 'c']);
    assert.deepEqual(m.values('rack'), ['1']);
  });

  it("indexes the union of its users' keys: one user dropping a key leaves it to the other", () => {
    const m = new NodeMembership();
    m.reset([node('n1', { zone: 'a', rack: '1' })]);
    m.indexKeys('grids', new Set(['zone']));
    m.indexKeys('nodeunits', new Set(['zone', 'rack']));
    m.indexKeys('nodeunits', new Set(['rack']));
    assert.deepEqual(names(m.members('zone', 'a')), ['n1']);
    m.indexKeys('grids', new Set());
    assert.deepEqual(names(m.members('zone', 'a')), [], 'no user left for zone');
    assert.deepEqual(names(m.members('rack', '1')), ['n1']);
  });

  it('tells listeners of each change with the previous and the new view, and of nothing else', () => {
    const m = new NodeMembership();
    const seen: string[] = [];
    m.onChange((old, now) => seen.push(`${old?.labels.zone ?? '-'}>${now?.labels.zone ?? '-'}`));
    m.set(node('n1', { zone: 'a' }));
    m.set(node('n1', { zone: 'a' }));
    m.set(node('n1', { zone: 'b' }));
    m.delete('n1');
    m.delete('n1');
    m.reset([node('n2', { zone: 'c' })]);
    assert.deepEqual(seen, ['->a', 'a>b', 'b>-']);
  });
});
