// The first hop of the raw two-hop measurement, in its own process like a worker: consume
// queue 1 (manual acks, prefetch BENCH_PREFETCH), publish each message persistent to
// queue 2 on a confirm channel, and ack the original only once the broker confirmed the
// copy — the shape of a step: take the step message, publish the result, then ack.
import amqp from 'amqplib';
import { fatal, onRequest, onStop, ready } from './ipc.ts';

const url = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const prefetch = Number(process.env.BENCH_PREFETCH ?? 50);

let conn: amqp.ChannelModel;
try {
  conn = await amqp.connect(url, { noDelay: true });
} catch (err) {
  fatal(err);
}
conn.on('error', () => undefined);
const consumeCh = await conn.createChannel();
const publishCh = await conn.createConfirmChannel();
await consumeCh.prefetch(prefetch);
let tag: string | null = null;

onRequest('relay', async (m) => {
  const q1 = String(m.from);
  const q2 = String(m.to);
  const r = await consumeCh.consume(q1, (msg) => {
    if (!msg) return;
    publishCh.publish('', q2, msg.content, { persistent: true, contentType: 'application/octet-stream' }, (err: unknown) => {
      if (err) consumeCh.nack(msg, false, true);
      else consumeCh.ack(msg);
    });
  });
  tag = r.consumerTag;
  return null;
});
onRequest('unrelay', async () => {
  if (tag) await consumeCh.cancel(tag);
  tag = null;
  return null;
});
onStop(async () => {
  await conn.close().catch(() => undefined);
});
ready();
