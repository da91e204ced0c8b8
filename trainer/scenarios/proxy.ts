// Test support for the shared pod scenarios: a loopback TCP proxy in front of the real test
// server that produces the network faults a real cluster does, without touching the server.
// - dark(): stop accepting (the port refuses connections) and drop every open connection, as a
//   server that is down; light() listens again on the same port.
// - hang(): accept connections and read them, never answer, as a stuck server or a load balancer
//   whose backend died; unhang() answers again (the hung connections are dropped, as a server
//   that comes back resets them, so clients retry at once).
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface FaultProxy {
  url: string;
  dark(): Promise<void>;
  light(): Promise<void>;
  hang(): void;
  unhang(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(targetUrl: string): Promise<FaultProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let listener: Server | null = null;
  let port = 0;
  let hanging = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const dropAll = () => {
    for (const socket of sockets) socket.destroy();
  };
  const light = async () => {
    if (listener) return;
    const server = createServer((client) => {
      track(client);
      if (hanging) {
        client.resume(); // read and drop: the request arrives, the answer never comes
        return;
      }
      const upstream = connect(Number(target.port), target.hostname);
      track(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
    listener = server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  };
  const dark = async () => {
    const closing = listener;
    listener = null;
    dropAll();
    if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
  };
  await light();
  return {
    url: `http://127.0.0.1:${port}`,
    dark,
    light,
    hang() {
      hanging = true;
      // Keep-alive connections would still reach the server: drop them so the next request hangs.
      dropAll();
    },
    unhang() {
      hanging = false;
      dropAll();
    },
    close: dark,
  };
}
