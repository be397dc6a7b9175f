// What-if switches for Tasker's processes, to measure a proposed core change without
// making it. Each is off unless the bench is run with its flag, and the report names it.
import net from 'node:net';

/**
 * `--nodelay`: amqplib leaves Nagle's algorithm on (its `noDelay` socket option defaults to
 * false), so a small frame written while an earlier one is unacknowledged waits for the
 * peer's delayed ACK (~40 ms on Linux). This forces TCP_NODELAY on every socket of the
 * process: what `{ noDelay: true }` in `amqp.connect` does for the AMQP sockets, which
 * @tasker/transport passes since commit 22ab20c (before it, this what-if measured the gain;
 * pg sets it on its own sockets).
 */
export function forceNoDelay(): void {
  const proto = net.Socket.prototype as unknown as { setNoDelay: (noDelay?: boolean) => net.Socket };
  const original = proto.setNoDelay;
  proto.setNoDelay = function (this: net.Socket) {
    return original.call(this, true);
  };
}

if (process.env.BENCH_FORCE_NODELAY === '1') forceNoDelay();
