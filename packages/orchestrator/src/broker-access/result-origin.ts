import { ErrorCode, TaskerError, type StepResult } from '@tasker/protocol';
import { loadBrokerAccessFile } from './config-file.ts';

/**
 * The results origin check (issue 6). RabbitMQ refuses a message whose `user_id` property
 * is not the publishing connection's user, so `user_id` says who published a result. With
 * this mapping configured, the orchestrator applies a result for namespace X only when it
 * was published by X's user or by an orchestrator; a child-task outcome (`child_outcome`)
 * only when published by an orchestrator. Anything else is parked with FORBIDDEN_ORIGIN
 * and changes nothing. Without a mapping (the default) results are not checked.
 */
export interface ResultOriginOptions {
  /** The broker user of a namespace's workers: `{namespace}` is replaced by the namespace. */
  namespaceUser: string;
  /**
   * Users that may publish any namespace's results and the only ones that may publish
   * child-task outcomes: the orchestrators'. The orchestrator's own user (from its AMQP URL)
   * is always added: it stamps its own child-task outcomes with it.
   */
  orchestratorUsers: string[];
}

export class ResultOriginCheck {
  /** The configured orchestrator users and `alsoTrusted`. */
  readonly orchestratorUsers: ReadonlySet<string>;

  constructor(
    readonly options: ResultOriginOptions,
    /** Trusted as orchestrators besides `options.orchestratorUsers` (the running orchestrator's own user). */
    alsoTrusted: readonly string[] = [],
  ) {
    if (!options.namespaceUser.includes('{namespace}')) {
      throw new Error(`resultOrigin.namespaceUser must contain {namespace}; got '${options.namespaceUser}'`);
    }
    this.orchestratorUsers = new Set([...options.orchestratorUsers, ...alsoTrusted]);
  }

  userOf(namespace: string): string {
    return this.options.namespaceUser.replaceAll('{namespace}', namespace);
  }

  /** Null when the result may be applied; else why it is refused. */
  check(result: Pick<StepResult, 'namespace' | 'child_outcome'>, userId: string | undefined): TaskerError | null {
    const ns = result.namespace;
    const who = userId ? `broker user '${userId}'` : 'a publisher that set no user_id';
    if (result.child_outcome) {
      if (userId && this.orchestratorUsers.has(userId)) return null;
      return new TaskerError(
        ErrorCode.FORBIDDEN_ORIGIN,
        `child-task outcome for namespace '${ns}' was published by ${who}; only an orchestrator (${[...this.orchestratorUsers].join(', ')}) sends those`,
      );
    }
    const expected = this.userOf(ns);
    if (userId && (userId === expected || this.orchestratorUsers.has(userId))) return null;
    return new TaskerError(
      ErrorCode.FORBIDDEN_ORIGIN,
      `step result for namespace '${ns}' was published by ${who}; only '${expected}' (the namespace's worker user) or an orchestrator may publish it`,
    );
  }
}

/** The mapping of a broker access file (infra/broker.yaml), for the orchestrator's prefix. */
export function resultOriginFromFile(path: string, prefix: string): ResultOriginOptions {
  const config = loadBrokerAccessFile(path);
  if (config.prefix !== prefix) {
    throw new Error(
      `TASKER_BROKER_ACCESS_FILE ${path} is for prefix '${config.prefix}' but the orchestrator runs with TASKER_AMQP_PREFIX '${prefix}': ` +
        'the user names would not match; use the file of this installation',
    );
  }
  return { namespaceUser: config.users.namespacePattern, orchestratorUsers: [config.users.orchestrator] };
}

/**
 * The check the orchestrator runs, from its options: a mapping given in code or a broker
 * access file (not both), or none. `ownUser` (its AMQP user) is always trusted.
 */
export function resolveResultOrigin(input: {
  given?: ResultOriginOptions | null;
  file?: string | null;
  prefix: string;
  ownUser: string;
}): ResultOriginCheck | null {
  if (input.given && input.file) {
    throw new Error('resultOrigin (in code) and TASKER_BROKER_ACCESS_FILE both say who may publish results; give one of them');
  }
  const options = input.given ?? (input.file ? resultOriginFromFile(input.file, input.prefix) : null);
  if (!options) return null;
  return new ResultOriginCheck(options, [input.ownUser]);
}
