// A TCP relay on loopback that a test can cut, hang and restore: the fault a flaky WAN link between
// a program and its apiserver causes. Bytes are piped unchanged (TLS passes through end to end), so
// the program under test talks to the real apiserver, only through a link the test controls.
//
//   cut()     every open connection is destroyed and new ones are closed as soon as they arrive
//             (the peer sees resets: a link that is down).
//   hang()    connections stay open but no byte moves in either direction, and new connections are
//             accepted and held (a half-open link: only timeouts in the program can notice).
//   restore() bytes flow again; held connections are released to the target. Connections that were
//             cut stay cut, as on a real link.
import { connect, createServer, type Server, type Socket } from 'node:net';

export type RelayState = 'open' | 'cut' | 'hung';

export interface Relay {
  readonly port: number;
  readonly state: RelayState;
  /** Connections currently relayed (or held while hung). */
  readonly connections: number;
  /** Connections accepted since start, whatever happened to them. */
  readonly accepted: number;
  cut(): void;
  hang(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

export async function startRelay(target: { host: string; port: number }, listenHost = '127.0.0.1'): Promise<Relay> {
  let state: RelayState = 'open';
  let accepted = 0;
  const pairs = new Set<Pair>();

  const destroy = (pair: Pair) => {
    pairs.delete(pair);
    pair.client.destroy();
    pair.upstream?.destroy();
  };

  // Connecting upstream and piping are deferred while hung, so a connection made during a hang
  // neither reaches the target nor gets refused: it waits, as a SYN through a dead link would.
  const link = (pair: Pair) => {
    if (pair.upstream || state !== 'open') return;
    const upstream = connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.on('error', () => destroy(pair));
    upstream.on('close', () => destroy(pair));
    pair.client.pipe(upstream).pipe(pair.client);
  };

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    accepted++;
    if (state === 'cut') {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('error', () => destroy(pair));
    client.on('close', () => destroy(pair));
    link(pair);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('relay: no TCP address');

  return {
    port: address.port,
    get state() {
      return state;
    },
    get connections() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cut() {
      state = 'cut';
      for (const pair of [...pairs]) destroy(pair);
    },
    hang() {
      state = 'hung';
      // Unpiped and paused sockets stop reading, so kernel buffers fill and the sender stalls too;
      // unpiping also keeps a pending 'drain' from resuming the flow behind the test's back.
      for (const { client, upstream } of pairs) {
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    restore() {
      state = 'open';
      for (const pair of pairs) {
        if (pair.upstream) pair.client.pipe(pair.upstream).pipe(pair.client);
        else link(pair);
      }
    },
    async close() {
      state = 'cut';
      for (const pair of [...pairs]) destroy(pair);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
