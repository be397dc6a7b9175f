/**
 * @tasker/protocol: the wire contract shared by every component and every language.
 *
 * Terminology
 * - **namespace**: a team's scope (`payments`). Template names, queues and broker users
 *   are all scoped by it, so `customer_success.process_refund` and
 *   `payments.process_refund` never collide.
 * - **template**: a YAML workflow definition (`namespace_name`, `name`, `version`, `steps`).
 * - **task**: one run of a template with a context (its input).
 * - **step**: one node of a task's DAG; it runs when all its dependencies are complete.
 * - **attempt**: one execution of a step; `max_attempts` bounds them, counting the first.
 * - **dispatch**: the orchestrator publishing a step message to the namespace's queue.
 * - **result**: a worker's answer to one attempt (success with a value, or an error).
 */
export * from './version.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './states.ts';
export * from './names.ts';
export * from './topology.ts';
export * from './retry.ts';
export * from './template.ts';
export * from './decode.ts';
export * from './json-value.ts';
export * from './api.ts';
export * from './messages/step-message.ts';
export * from './messages/step-result.ts';
export * from './messages/task-request.ts';
export * from './messages/retry-due.ts';
export * from './messages/control.ts';
export { ID_PATTERN } from './messages/common.ts';
export * from './json-schema.ts';
