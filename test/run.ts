// `npm test`: everything CI checks, in one command. Installs missing OS tools, builds the pinned
// Kubernetes binaries and CoreDNS when missing (cached outside the repo), type-checks, lints, then
// runs every unit and integration test with Node's test runner.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBinaries, ensureCoreDNS } from './cluster/binaries.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);

function step(name: string, command: string, args: string[]): void {
  const started = Date.now();
  console.error(`\n[test] ${name}`);
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`[test] ${name} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
  console.error(`[test] ${name} ok in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

const [major] = process.versions.node.split('.').map(Number);
if ((major ?? 0) < 22) {
  console.error(
    `[test] Node ${process.versions.node} is too old; run through npm (npm test), which uses the pinned Node from node_modules`,
  );
  process.exit(1);
}

step('OS tools', 'bash', [join(root, 'test', 'system-deps.sh')]);
console.error('\n[test] Kubernetes binaries');
const started = Date.now();
const binDir = await ensureBinaries();
console.error(`[test] binaries in ${binDir} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
// Built here rather than inside the DNS test, whose time limit a first build could exceed.
console.error(`[test] CoreDNS: ${await ensureCoreDNS()}`);
step('typecheck', bin('tsc'), ['-p', 'tsconfig.json']);
step('lint', bin('biome'), ['check', '.']);

const files = process.argv.slice(2);
step('tests', process.execPath, [
  '--test',
  '--test-reporter=spec',
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '2'}`,
  '--test-timeout=900000',
  ...(files.length ? files : ['kube/**/*.test.ts', 'controllers/**/*.test.ts', 'wrapper/**/*.test.ts', 'test/**/*.test.ts']),
]);
