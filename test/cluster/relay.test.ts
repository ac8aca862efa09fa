import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Relay, startRelay } from './relay.ts';

// An echo server stands in for the apiserver: the relay only moves bytes.
const echo = createServer((s) => s.pipe(s));
let relay: Relay;

before(async () => {
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const address = echo.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  relay = await startRelay({ host: '127.0.0.1', port: address.port });
});
after(async () => {
  await relay.close();
  echo.close();
});

async function open(): Promise<{ socket: Socket; received: () => string }> {
  const socket = connect(relay.port, '127.0.0.1');
  await once(socket, 'connect');
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    data += d;
  });
  socket.on('error', () => {});
  return { socket, received: () => data };
}

async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('open relay moves bytes both ways', async () => {
  const c = await open();
  c.socket.write('hello');
  await until('echo', () => c.received() === 'hello');
  c.socket.destroy();
});

test('hang holds bytes of open and new connections; restore delivers them', async () => {
  const c = await open();
  c.socket.write('a');
  await until('echo', () => c.received() === 'a');
  relay.hang();
  c.socket.write('b');
  const held = await open();
  held.socket.write('c');
  await sleep(300);
  assert.equal(c.received(), 'a', 'no byte crosses a hung relay');
  assert.equal(held.received(), '');
  assert.ok(!c.socket.destroyed);
  relay.restore();
  await until('held bytes', () => c.received() === 'ab' && held.received() === 'c');
  c.socket.destroy();
  held.socket.destroy();
});

test('cut resets open connections and refuses new ones until restored', async () => {
  const c = await open();
  relay.cut();
  await until('reset', () => c.socket.destroyed);
  const refused = connect(relay.port, '127.0.0.1');
  refused.on('error', () => {});
  await once(refused, 'close');
  relay.restore();
  const again = await open();
  again.socket.write('back');
  await until('echo after restore', () => again.received() === 'back');
  again.socket.destroy();
  await until('pairs released', () => relay.connections === 0);
});
