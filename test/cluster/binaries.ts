// Locates (building when missing) the pinned control-plane binaries; see build-binaries.sh.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), 'build-binaries.sh');
let pending: Promise<string> | undefined;

/** Resolves to the folder holding etcd, kube-*, kubectl and kwok. Build progress goes to stderr. */
export function ensureBinaries(): Promise<string> {
  pending ??= new Promise<string>((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.on('error', (err) => reject(new Error(`cannot run ${script}: ${err.message}`)));
    child.on('exit', (code) => {
      const bin = out.trim().split('\n').pop();
      if (code === 0 && bin) resolve(bin);
      else reject(new Error(`building the Kubernetes binaries failed (exit ${code}); see the messages above`));
    });
  });
  return pending;
}
