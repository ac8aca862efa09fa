// `npm run demo -- --once` tells the whole story on the embedded cluster and checks its facts:
// per-NodeUnit Deployments, each node's wrapper and real kube-proxy holding only its NodeUnit's
// endpoints, and the view following a node moved to another NodeUnit.
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
  // Every component's command line names the cluster folder; none may outlive the demo.
  const folder = /cluster folder: (\S+)/.exec(out)?.[1];
  assert.ok(folder, 'the demo names its cluster folder');
  const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(folder));
  assert.deepEqual(left, []);
});
