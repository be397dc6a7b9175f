export * from './broker.ts';
export type { Options as AmqpOptions, ConsumeMessage } from 'amqplib';
export { amqpUsername } from './amqp-user.ts';
export { oncePerTurn } from './turn.ts';
