// The programs' logger: pino writing JSON lines to stdout, gathered into few asynchronous writes.
// A blocking write per line stalls the thread that also sends the writes those lines report
// whenever the reader of stdout is slow. An asynchronous write per line costs ~70 µs of CPU (the
// thread pool and its wake-ups) against ~4 µs for a blocking one, measured with Node 24 on the
// 2-core benchmark machine; in a CPU profile of a new NodeUnit's reaction (one line per grid,
// spread over the reaction) they took 43 ms of the main thread's ~500. Lines are therefore held
// for at most BATCH_MS (or until BATCH_BYTES are waiting) and written together; what is still
// held when the process exits is written then.

import { write, writeSync } from 'node:fs';
import { type Logger, type LoggerOptions, pino } from 'pino';

/** The longest a line waits to be written with the ones after it. */
export const BATCH_MS = 100;
/** Lines waiting to be written are written at once when they reach this size. */
export const BATCH_BYTES = 16 * 1024;

/** A pino destination (anything with `write(line)`): lines gathered, written asynchronously in batches. */
export class BatchedLines {
  private readonly fd: number;
  private held: string[] = [];
  private heldBytes = 0;
  private timer?: NodeJS.Timeout;
  /** A write is in flight; lines held meanwhile go with the next one. */
  private writing = false;
  /** stdout is gone (EPIPE and the like): lines are dropped rather than held forever. */
  private broken = false;

  constructor(fd: number) {
    this.fd = fd;
  }

  write(line: string): boolean {
    if (this.broken) return true;
    this.held.push(line);
    this.heldBytes += line.length;
    if (this.heldBytes >= BATCH_BYTES) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), BATCH_MS);
      this.timer.unref();
    }
    return true;
  }

  /** Writes what is held, unless a write is in flight (which then writes it when it ends). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing || this.held.length === 0) return;
    const data = Buffer.from(this.held.join(''));
    this.held = [];
    this.heldBytes = 0;
    this.send(data);
  }

  /** Writes what is held, blocking: at exit. A write still in flight finishes on its own. */
  flushSync(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.broken || this.held.length === 0) return;
    let data = Buffer.from(this.held.join(''));
    this.held = [];
    this.heldBytes = 0;
    while (data.length > 0) {
      try {
        data = data.subarray(writeSync(this.fd, data));
      } catch (err) {
        // A non-blocking stdout that is full: wait for its reader, as long as it takes.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
    }
  }

  private send(data: Buffer): void {
    this.writing = true;
    write(this.fd, data, 0, data.length, null, (err, written) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.send(data), 10).unref();
          return;
        }
        this.writing = false;
        this.broken = true;
        return;
      }
      if (written < data.length) {
        this.send(data.subarray(written));
        return;
      }
      this.writing = false;
      if (this.heldBytes >= BATCH_BYTES) this.flush();
      else if (this.held.length > 0 && !this.timer) {
        this.timer = setTimeout(() => this.flush(), BATCH_MS);
        this.timer.unref();
      }
    });
  }
}

export function stdoutLogger(options: LoggerOptions): Logger {
  const out = new BatchedLines(1);
  process.on('exit', () => out.flushSync());
  return pino(options, out);
}
