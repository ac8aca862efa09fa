// Runs inside a kube-proxy's network namespace: accepts TCP on 127.0.0.1:<port> there and pipes
// each connection to a unix socket, whose other end (in the test process, on the host's network)
// connects to the real target. Unix sockets live in the filesystem, so they cross namespaces.
import { connect, createServer } from 'node:net';

const [port, socketPath] = process.argv.slice(2);
if (!port || !socketPath) {
  console.error('usage: netns-bridge.ts <port> <unix-socket>');
  process.exit(2);
}
createServer((inside) => {
  const outside = connect(socketPath);
  inside.pipe(outside).pipe(inside);
  inside.on('error', () => outside.destroy());
  outside.on('error', () => inside.destroy());
}).listen(Number(port), '127.0.0.1', () => console.log(`bridging 127.0.0.1:${port} -> ${socketPath}`));
