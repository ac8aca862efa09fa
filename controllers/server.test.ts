import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { startServers } from './server.ts';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type?: string; allow?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], allow: res.headers.allow, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('metrics, liveness and readiness on separate addresses; other paths 404, other methods 405', async () => {
  const [m, h] = [await freePort(), await freePort()];
  let problems: string[] = [];
  let ready = false;
  const close = await startServers(
    { metrics: { host: '127.0.0.1', port: m }, health: { host: '127.0.0.1', port: h } },
    { contentType: 'text/plain; version=0.0.4; charset=utf-8', render: async () => 'up 1\n' },
    { problems: () => problems, ready: () => ready },
  );
  try {
    assert.deepEqual(await get(m, '/metrics'), {
      status: 200,
      type: 'text/plain; version=0.0.4; charset=utf-8',
      allow: undefined,
      body: 'up 1\n',
    });
    assert.equal((await get(m, '/healthz')).status, 404, 'health is not served on the metrics address');
    assert.equal((await get(h, '/metrics')).status, 404);
    assert.deepEqual(await get(h, '/healthz'), { status: 200, type: 'text/plain; charset=utf-8', allow: undefined, body: 'ok' });
    assert.equal((await get(h, '/readyz')).status, 503);
    ready = true;
    assert.equal((await get(h, '/readyz?verbose')).status, 200);
    problems = ['pods: list/watch failing for 130s: connect ECONNREFUSED'];
    assert.deepEqual(await get(h, '/healthz'), {
      status: 500,
      type: 'text/plain; charset=utf-8',
      allow: undefined,
      body: '[-]pods: list/watch failing for 130s: connect ECONNREFUSED\nhealthz check failed\n',
    });
    assert.equal((await get(h, '/readyz', 'HEAD')).body, '');
    const post = await get(h, '/readyz', 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.allow, 'GET, HEAD');
  } finally {
    await close();
  }
});

test('one server when both addresses are the same; a failing render is a 500; a taken port is an error', async () => {
  const p = await freePort();
  const at = { host: '127.0.0.1', port: p };
  const close = await startServers(
    { metrics: at, health: at },
    {
      contentType: 'text/plain',
      render: async () => {
        throw new Error('collect failed');
      },
    },
    { problems: () => [], ready: () => true },
  );
  try {
    assert.equal((await get(p, '/readyz')).status, 200);
    assert.deepEqual(await get(p, '/metrics'), {
      status: 500,
      type: 'text/plain; charset=utf-8',
      allow: undefined,
      body: 'collect failed\n',
    });
    await assert.rejects(
      startServers({ health: at }, { contentType: '', render: async () => '' }, { problems: () => [], ready: () => true }),
      /EADDRINUSE/,
    );
  } finally {
    await close();
  }
});
