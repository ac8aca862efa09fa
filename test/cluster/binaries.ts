// Locates (building when missing) the pinned control-plane binaries; see build-binaries.sh.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), 'build-binaries.sh');
const pending = new Map<string, Promise<string>>();

function runBuildScript(args: string[], what: string): Promise<string> {
  const key = args.join(' ');
  let result = pending.get(key);
  if (!result) {
    result = new Promise<string>((resolve, reject) => {
      const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
      child.on('error', (err) => reject(new Error(`cannot run ${script}: ${err.message}`)));
      child.on('exit', (code) => {
        const bin = out.trim().split('\n').pop();
        if (code === 0 && bin) resolve(bin);
        else reject(new Error(`building ${what} failed (exit ${code}); see the messages above`));
      });
    });
    pending.set(key, result);
  }
  return result;
}

/** Resolves to the folder holding etcd, kube-*, kubectl and kwok. Build progress goes to stderr. */
export function ensureBinaries(): Promise<string> {
  return runBuildScript([], 'the Kubernetes binaries');
}

/** Resolves to the path of the pinned CoreDNS binary (built on first use, in its own cache folder). */
export async function ensureCoreDNS(): Promise<string> {
  return join(await runBuildScript(['coredns'], 'CoreDNS'), 'coredns');
}
