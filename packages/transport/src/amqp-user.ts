/**
 * The broker user an amqp:// URL authenticates as, the way amqplib reads it: the URL's
 * user name, or `guest` when the URL has no credentials at all.
 *
 * RabbitMQ checks a message's `user_id` property against the connection's user and refuses
 * a mismatch, so a publisher that sets `userId` to this value proves who sent the message
 * (the orchestrator's result-origin check relies on it). A user with the `impersonator`
 * tag is exempt from that check: never give it to a worker's user.
 */
export function amqpUsername(url: string): string {
  const u = new URL(url);
  if (u.username === '' && u.password === '') return 'guest';
  return decodeURIComponent(u.username);
}
