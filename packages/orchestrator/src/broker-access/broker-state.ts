import type { BindingInfo, ExchangeInfo, ManagementApi, PermissionInfo, QueueInfo, TopicPermissionInfo, UserInfo } from './management-api.ts';

/** What the broker holds now, as far as a plan needs to know: read once, compared with the desired state. */
export interface BrokerState {
  vhostExists: boolean;
  exchanges: ExchangeInfo[];
  queues: QueueInfo[];
  bindings: BindingInfo[];
  /** By user name; a planned user missing here does not exist. */
  users: Map<string, UserInfo>;
  permissions: Map<string, PermissionInfo>;
  topicPermissions: Map<string, TopicPermissionInfo[]>;
}

/** Reads the vhost's topology and the given users with their permissions in it. */
export async function readBrokerState(api: ManagementApi, vhost: string, users: readonly string[]): Promise<BrokerState> {
  const vhostExists = await api.vhostExists(vhost);
  if (!vhostExists) {
    return { vhostExists, exchanges: [], queues: [], bindings: [], users: new Map(), permissions: new Map(), topicPermissions: new Map() };
  }
  const [exchanges, queues, bindings, allUsers, permissions, topics] = await Promise.all([
    api.exchanges(vhost),
    api.queues(vhost),
    api.bindings(vhost),
    api.users(),
    api.vhostPermissions(vhost),
    api.vhostTopicPermissions(vhost),
  ]);
  const wanted = new Set(users);
  const topicPermissions = new Map<string, TopicPermissionInfo[]>();
  for (const t of topics) {
    if (!wanted.has(t.user)) continue;
    const list = topicPermissions.get(t.user) ?? [];
    list.push(t);
    topicPermissions.set(t.user, list);
  }
  return {
    vhostExists,
    exchanges,
    queues,
    bindings,
    users: new Map(allUsers.filter((u) => wanted.has(u.name)).map((u) => [u.name, u])),
    permissions: new Map(permissions.filter((p) => wanted.has(p.user)).map((p) => [p.user, p])),
    topicPermissions,
  };
}
