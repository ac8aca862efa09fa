// Child processes of the test control plane. Every child is started under `setpriv --pdeathsig
// KILL`, so the kernel kills it when this Node process dies for any reason (test failure,
// Ctrl-C, SIGKILL of the test runner): teardown leaves no process behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const live = new Set<ChildProcess>();

function killAllSync(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.once('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    // A program that handles the signal itself (e.g. to stop a cluster gracefully) goes first.
    if (process.listenerCount(signal) > 1) return;
    killAllSync();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

export interface Component {
  name: string;
  logFile: string;
  child: ChildProcess;
  /** Settles when the process exits, with its exit code or signal. */
  exited: Promise<string>;
  isRunning(): boolean;
  stop(graceMs?: number): Promise<void>;
  /** Last lines of its log, to explain a failure. */
  tail(lines?: number): string;
}

export function startComponent(
  name: string,
  command: string,
  args: string[],
  options: { logDir: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Component {
  const logFile = join(options.logDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', command, ...args], {
    stdio: ['ignore', fd, fd],
    env: options.env ?? process.env,
    cwd: options.cwd,
  });
  closeSync(fd);
  live.add(child);
  let running = true;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      live.delete(child);
      resolve(signal ?? String(code));
    });
    child.once('error', (err) => {
      running = false;
      live.delete(child);
      resolve(`spawn error: ${err.message}`);
    });
  });
  const tail = (lines = 30) => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  };
  return {
    name,
    logFile,
    child,
    exited,
    isRunning: () => running,
    tail,
    async stop(graceMs = 5000) {
      if (!running) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `check` until it returns a value other than undefined, failing early if `component` dies. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; components?: Component[] } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let lastError: unknown;
  for (;;) {
    for (const c of options.components ?? []) {
      if (!c.isRunning()) {
        throw new Error(`${c.name} exited while waiting for ${what}; log ${c.logFile}:\n${c.tail()}`);
      }
    }
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
