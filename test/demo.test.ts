// `npm run demo -- --once` tells the whole story on the embedded cluster and checks its facts:
// per-NodeUnit Deployments and StatefulSets, each node's wrapper and real kube-proxy holding only
// its NodeUnit's endpoints, each node's CoreDNS answering with its NodeUnit's mysql pod, and the
// view following a node moved to another NodeUnit.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

test('npm run demo -- --once: every fact holds, and it exits 0 leaving no process', async () => {
  const child = spawn(process.execPath, [join(root, 'test/demo/main.ts'), '--once'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /all facts hold/);
  assert.doesNotMatch(out, /^FAIL/m);
  // The story covered both NodeUnits, the kube-proxies and the move.
  assert.match(out, /ok {3}zone-a-node-1 \(zone-a\): kube-proxy routes wordpress-svc only to zone-a's endpoints/);
  assert.match(out, /ok {3}zone-a-node-2 \(zone-b\): wrapper serves only zone-b's endpoints of mysql-svc/);
  // The DNS column: each node's CoreDNS, reading through its wrapper, answers the StatefulSetGrid's
  // pod-0 name and its headless Service with the mysql pod of the node's own NodeUnit, whose IP the
  // unit's listing shows. After the move the moved node answers with its new unit's pod; a pod that
  // ran on the moved node stays there (StatefulSet pods are not evicted), so its old unit then has
  // no answer, and the headless Service of its new unit answers with it too.
  const view = (title: string) => out.slice(out.indexOf(`== ${title}`)).split('\n== ')[0]!;
  const literal = (t: string) => t.replace(/[.()]/g, '\\$&');
  for (const [title, moved] of [
    ['grids applied', false],
    ['after moving zone-a-node-2 to zone=zone-b', true],
  ] as const) {
    const text = view(title);
    const unitOf = (node: string) => (moved && node === 'zone-a-node-2' ? 'zone-b' : node.replace(/-node-\d$/, ''));
    const pod0 = new Map(
      [...text.matchAll(/^ {2}stateful\/mysql-(zone-[ab]) +1\/1 ready +mysql-zone-[ab]-0 (\d+\.\d+\.\d+\.\d+)@(\S+)/gm)].map((m) => [
        m[1]!,
        { ip: m[2]!, node: m[3]! },
      ]),
    );
    assert.equal(pod0.size, 2, text);
    assert.notEqual(pod0.get('zone-a')!.ip, pod0.get('zone-b')!.ip);
    for (const node of ['zone-a-node-1', 'zone-a-node-2', 'zone-b-node-1', 'zone-b-node-2']) {
      const unit = unitOf(node);
      const pod = pod0.get(unit)!;
      const answer = unitOf(pod.node) === unit ? `${pod.ip} (mysql-${unit}-0)` : '(none)';
      // The headless Service: every mysql pod running in the node's unit now, whichever unit's
      // StatefulSet it belongs to (the scheduler may have put one on the node that moved).
      const shared =
        [...pod0]
          .filter(([, p]) => unitOf(p.node) === unit)
          .sort(([, a], [, b]) => (a.ip < b.ip ? -1 : 1))
          .map(([u, p]) => `${p.ip} (mysql-${u}-0)`)
          .join(' ') || '(none)';
      assert.match(text, new RegExp(`^ {2}${node} +${unit} +${literal(answer)} +${literal(shared)}$`, 'm'), `${node} in ${title}`);
    }
  }
  assert.match(out, /^ok {3}zone-b-node-2 \(zone-b\): DNS answers mysql-0\.mysql-svc with its own NodeUnit's pod mysql-zone-b-0/m);
  // Every component's command line names the cluster folder; none may outlive the demo.
  const folder = /cluster folder: (\S+)/.exec(out)?.[1];
  assert.ok(folder, 'the demo names its cluster folder');
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(folder));
  assert.deepEqual(left, []);
});
