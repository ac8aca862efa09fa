import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

/** The built-in modules a fresh Node process has loaded after importing `specifiers`. */
function builtinsLoadedBy(...specifiers: string[]): string[] {
  const code = `${specifiers.map((s) => `await import(${JSON.stringify(s)});`).join('')}
    console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.startsWith('NativeModule '))));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: import.meta.dirname, encoding: 'utf8' });
  return JSON.parse(out) as string[];
}

const UNDICI = 'NativeModule internal/deps/undici/undici';

test("an ES import of node:http loads undici (the reason for node-http.ts); Node's own HTTP module object does not", () => {
  assert.ok(
    builtinsLoadedBy('node:http').includes(UNDICI),
    'this Node no longer loads undici for `import "node:http"`: kube/node-http.ts can be replaced by a plain import',
  );
  assert.ok(!builtinsLoadedBy('./node-http.ts').includes(UNDICI));
});

test("the apiserver client and both programs' HTTP servers load no undici", () => {
  const loaded = builtinsLoadedBy('./client.ts', './reflector.ts', '../controllers/server.ts', '../wrapper/server.ts');
  assert.ok(loaded.includes('NativeModule http'), 'the modules were imported');
  assert.ok(!loaded.includes(UNDICI), `undici loaded by: ${loaded.filter((m) => /undici|webstreams/.test(m)).join(', ')}`);
  // The apiserver client loads HTTP/2 when it first opens a session, not on import (the wrapper never does).
  assert.ok(!loaded.includes('NativeModule http2'), 'node:http2 loaded on import');
});
