// Starting and stopping Node's own HTTP servers, for both programs' endpoints.
import type { Server } from 'node:http';
import type { ListenAddress } from './flags.ts';

/** Listens on an address; an empty host means every interface, as `:8080` does for Go programs. */
export function listenAt(server: Server, address: ListenAddress): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host || '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Stops accepting connections and closes the open ones: probes, scrapers and kube-proxy keep
 * connections alive between requests, and they must not hold a shutdown up.
 */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
