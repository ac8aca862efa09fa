// A real kube-proxy for one simulated node, in a network namespace of its own so the rules it
// programs never touch this machine's network. Its API endpoint (the apiserver, or a wrapper on
// the host's loopback) is reached through a unix-socket bridge.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { type Component, startComponent, waitFor } from './processes.ts';

const run = promisify(execFile);
const bridgeScript = join(dirname(fileURLToPath(import.meta.url)), 'netns-bridge.ts');

export interface KubeProxyOptions {
  nodeName: string;
  /** Plain-HTTP URL on the host's loopback (e.g. a wrapper) to use as --master; default: the apiserver. */
  target?: string;
  mode?: 'iptables' | 'nftables';
  /** A KubeProxyConfiguration (e.g. an example's) laid over the harness's; its kubeconfig path is replaced. */
  config?: Record<string, unknown>;
  binDir: string;
  dir: string;
  logDir: string;
  apiserver: { port: number; kubeconfig: string };
}

export interface KubeProxy {
  nodeName: string;
  logFile: string;
  /** The rules kube-proxy programmed in its namespace (iptables-save, or nft list ruleset). */
  rules(): Promise<string>;
  stop(): Promise<void>;
}

export async function startKubeProxy(o: KubeProxyOptions): Promise<KubeProxy> {
  const mode = o.mode ?? (o.config?.mode as KubeProxyOptions['mode']) ?? 'iptables';
  const name = o.nodeName.replace(/[^A-Za-z0-9_.-]/g, '_');
  const components: Component[] = [];
  let hostBridge: Server | undefined;
  const stop = async () => {
    for (const c of components.reverse()) await c.stop();
    hostBridge?.close();
  };
  try {
    const holder = startComponent(`netns-${name}`, 'unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && exec sleep infinity'], {
      logDir: o.logDir,
    });
    components.push(holder);
    const netns = `--net=/proc/${holder.child.pid}/ns/net`;
    await waitFor(
      `network namespace of ${o.nodeName}`,
      async () => ((await run('nsenter', [netns, 'ip', '-o', 'link', 'show', 'lo'])).stdout.includes('UP') ? true : undefined),
      { components: [holder], timeoutMs: 10_000 },
    );

    const target = o.target ? new URL(o.target) : new URL(`https://127.0.0.1:${o.apiserver.port}`);
    const targetPort = Number(target.port);
    const socketPath = join(o.dir, `kube-proxy-${name}.sock`);
    hostBridge = createServer((inside) => {
      const outside = connect(targetPort, target.hostname);
      inside.pipe(outside).pipe(inside);
      inside.on('error', () => outside.destroy());
      outside.on('error', () => inside.destroy());
    });
    await new Promise<void>((resolve, reject) => hostBridge!.once('error', reject).listen(socketPath, resolve));

    // Inside the namespace the endpoint keeps its port: a wrapper is at 127.0.0.1:51006 as on a
    // real node, the apiserver at its own port (its serving cert names 127.0.0.1).
    const insidePort = o.target ? 51006 : o.apiserver.port;
    const bridge = startComponent(
      `netns-bridge-${name}`,
      'nsenter',
      [netns, process.execPath, bridgeScript, String(insidePort), socketPath],
      {
        logDir: o.logDir,
      },
    );
    components.push(bridge);

    let kubeconfig = o.apiserver.kubeconfig;
    if (o.target) {
      kubeconfig = join(o.dir, `kube-proxy-${name}.kubeconfig`);
      await writeFile(
        kubeconfig,
        k8s.dumpYaml({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'wrapper', cluster: { server: `http://127.0.0.1:${insidePort}` } }],
          users: [{ name: 'kube-proxy', user: {} }],
          contexts: [{ name: 'wrapper', context: { cluster: 'wrapper', user: 'kube-proxy' } }],
          'current-context': 'wrapper',
        }),
      );
    }
    const config = join(o.dir, `kube-proxy-${name}.yaml`);
    await writeFile(
      config,
      k8s.dumpYaml({
        ...o.config,
        apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
        kind: 'KubeProxyConfiguration',
        clientConnection: { ...(o.config?.clientConnection as object | undefined), kubeconfig },
        hostnameOverride: o.nodeName,
        mode,
        clusterCIDR: '10.244.0.0/16',
        bindAddress: '127.0.0.1',
        healthzBindAddress: '127.0.0.1:10256',
        metricsBindAddress: '127.0.0.1:10249',
        // Conntrack tables are shared with the host kernel; leave them alone.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      }),
    );
    const proxy = startComponent(`kube-proxy-${name}`, 'nsenter', [netns, join(o.binDir, 'kube-proxy'), `--config=${config}`, '--v=2'], {
      logDir: o.logDir,
    });
    components.push(proxy);

    const rules = async () => {
      const cmd = mode === 'iptables' ? ['iptables-save'] : ['nft', 'list', 'ruleset'];
      return (await run('nsenter', [netns, ...cmd], { maxBuffer: 64 * 1024 * 1024 })).stdout;
    };
    // Synced once it has written its own chains.
    await waitFor(
      `kube-proxy ${o.nodeName} to program rules`,
      async () => ((await rules()).includes('KUBE-SERVICES') || (await rules()).includes('services') ? true : undefined),
      {
        components,
        timeoutMs: 60_000,
        intervalMs: 250,
      },
    );
    return { nodeName: o.nodeName, logFile: proxy.logFile, rules, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
