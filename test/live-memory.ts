// What a unit test can read of a process's memory: the live bytes after full collections.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Live memory after full collections: V8's heap plus external memory (a large decoded text is an
 * external string, whose bytes count there). gc is exposed at run time: the test runner does not
 * pass --expose-gc.
 */
export async function liveBytes(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // External memory is released by finalizers that run after a collection.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
