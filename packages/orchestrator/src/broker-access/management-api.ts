/**
 * The few RabbitMQ management HTTP API calls broker access needs
 * (https://www.rabbitmq.com/management.html#http-api). The URL carries an administrator's
 * credentials: `TASKER_RABBITMQ_MANAGEMENT_URL`, default `http://guest:guest@127.0.0.1:15672`.
 */
export const DEFAULT_MANAGEMENT_URL = 'http://guest:guest@127.0.0.1:15672';
export const MANAGEMENT_URL_VARIABLE = 'TASKER_RABBITMQ_MANAGEMENT_URL';

export interface ExchangeInfo {
  name: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments: Record<string, unknown>;
}
export interface QueueInfo {
  name: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive?: boolean;
  arguments: Record<string, unknown>;
}
export interface BindingInfo {
  source: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: Record<string, unknown>;
}
export interface UserInfo {
  name: string;
  password_hash?: string;
  hashing_algorithm?: string;
  /** A comma-separated string in older versions, a list in newer ones. */
  tags: string | string[];
}
export interface PermissionInfo {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}
export interface TopicPermissionInfo {
  user: string;
  vhost: string;
  exchange: string;
  write: string;
  read: string;
}

/** Thrown for an answer that is neither success nor an expected 404. */
export class ManagementApiError extends Error {
  override readonly name = 'ManagementApiError';
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

export class ManagementApi {
  private readonly base: string;
  private readonly authorization: string;
  /** The administrator the API is called as. */
  readonly adminUser: string;

  constructor(url: string) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`${MANAGEMENT_URL_VARIABLE} is not a URL: '${url}'`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${MANAGEMENT_URL_VARIABLE} must be an http:// or https:// URL; got '${u.protocol}'`);
    this.adminUser = decodeURIComponent(u.username || 'guest');
    const password = u.username || u.password ? decodeURIComponent(u.password) : 'guest';
    this.authorization = `Basic ${Buffer.from(`${this.adminUser}:${password}`).toString('base64')}`;
    u.username = '';
    u.password = '';
    this.base = `${u.origin}${u.pathname.replace(/\/+$/, '')}/api`;
  }

  /** Where the API is, without credentials, for messages. */
  get location(): string {
    return this.base;
  }

  private async call<T>(method: string, path: string, body?: unknown, allow404 = false): Promise<T | null> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: { authorization: this.authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      const c = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (err as Error).message;
      throw new ManagementApiError(
        `the RabbitMQ management API at ${this.base} is not reachable (${cause}): enable it with ` +
          `'rabbitmq-plugins enable rabbitmq_management', or point ${MANAGEMENT_URL_VARIABLE} at it`,
        null,
      );
    }
    if (res.status === 404 && allow404) return null;
    if (res.status === 401) {
      throw new ManagementApiError(`the RabbitMQ management API refused user '${this.adminUser}' (401): ${MANAGEMENT_URL_VARIABLE} needs an administrator's credentials`, 401);
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new ManagementApiError(`${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`, res.status);
    }
    if (res.status === 204 || res.status === 201) return null;
    const text = await res.text();
    return text ? (JSON.parse(text) as T) : null;
  }

  private static v(vhost: string): string {
    return encodeURIComponent(vhost);
  }
  private static n(name: string): string {
    return encodeURIComponent(name);
  }

  async vhostExists(vhost: string): Promise<boolean> {
    return (await this.call('GET', `/vhosts/${ManagementApi.v(vhost)}`, undefined, true)) !== null;
  }
  async createVhost(vhost: string): Promise<void> {
    await this.call('PUT', `/vhosts/${ManagementApi.v(vhost)}`, {});
  }
  async exchanges(vhost: string): Promise<ExchangeInfo[]> {
    return (await this.call<ExchangeInfo[]>('GET', `/exchanges/${ManagementApi.v(vhost)}?columns=name,type,durable,auto_delete,internal,arguments`)) ?? [];
  }
  async queues(vhost: string): Promise<QueueInfo[]> {
    return (await this.call<QueueInfo[]>('GET', `/queues/${ManagementApi.v(vhost)}?columns=name,durable,auto_delete,exclusive,arguments&disable_stats=true`)) ?? [];
  }
  async bindings(vhost: string): Promise<BindingInfo[]> {
    return (await this.call<BindingInfo[]>('GET', `/bindings/${ManagementApi.v(vhost)}`)) ?? [];
  }
  async declareExchange(vhost: string, name: string, type: string): Promise<void> {
    await this.call('PUT', `/exchanges/${ManagementApi.v(vhost)}/${ManagementApi.n(name)}`, { type, durable: true, auto_delete: false, internal: false, arguments: {} });
  }
  async declareQueue(vhost: string, name: string, args: Record<string, unknown>): Promise<void> {
    await this.call('PUT', `/queues/${ManagementApi.v(vhost)}/${ManagementApi.n(name)}`, { durable: true, auto_delete: false, arguments: args });
  }
  async bind(vhost: string, kind: 'queue' | 'exchange', source: string, destination: string, routingKey: string): Promise<void> {
    const d = kind === 'queue' ? 'q' : 'e';
    await this.call('POST', `/bindings/${ManagementApi.v(vhost)}/e/${ManagementApi.n(source)}/${d}/${ManagementApi.n(destination)}`, { routing_key: routingKey, arguments: {} });
  }
  async user(name: string): Promise<UserInfo | null> {
    return this.call<UserInfo>('GET', `/users/${ManagementApi.n(name)}`, undefined, true);
  }
  async users(): Promise<UserInfo[]> {
    return (await this.call<UserInfo[]>('GET', '/users')) ?? [];
  }
  async putUser(name: string, password: string): Promise<void> {
    // No tags: no management access, and above all not `impersonator`, which would let the
    // user publish under another user's user_id.
    await this.call('PUT', `/users/${ManagementApi.n(name)}`, { password, tags: '' });
  }
  async deleteUser(name: string): Promise<void> {
    await this.call('DELETE', `/users/${ManagementApi.n(name)}`, undefined, true);
  }
  async permissions(vhost: string, user: string): Promise<PermissionInfo | null> {
    return this.call<PermissionInfo>('GET', `/permissions/${ManagementApi.v(vhost)}/${ManagementApi.n(user)}`, undefined, true);
  }
  async vhostPermissions(vhost: string): Promise<PermissionInfo[]> {
    return (await this.call<PermissionInfo[]>('GET', `/vhosts/${ManagementApi.v(vhost)}/permissions`)) ?? [];
  }
  async putPermissions(vhost: string, user: string, p: { configure: string; write: string; read: string }): Promise<void> {
    await this.call('PUT', `/permissions/${ManagementApi.v(vhost)}/${ManagementApi.n(user)}`, p);
  }
  async topicPermissions(vhost: string, user: string): Promise<TopicPermissionInfo[]> {
    return (await this.call<TopicPermissionInfo[]>('GET', `/topic-permissions/${ManagementApi.v(vhost)}/${ManagementApi.n(user)}`, undefined, true)) ?? [];
  }
  async vhostTopicPermissions(vhost: string): Promise<TopicPermissionInfo[]> {
    return (await this.call<TopicPermissionInfo[]>('GET', `/vhosts/${ManagementApi.v(vhost)}/topic-permissions`)) ?? [];
  }
  async putTopicPermission(vhost: string, user: string, t: { exchange: string; write: string; read: string }): Promise<void> {
    await this.call('PUT', `/topic-permissions/${ManagementApi.v(vhost)}/${ManagementApi.n(user)}`, t);
  }
  /** Removes every topic permission of the user in the vhost (the API has no per-exchange delete). */
  async clearTopicPermissions(vhost: string, user: string): Promise<void> {
    await this.call('DELETE', `/topic-permissions/${ManagementApi.v(vhost)}/${ManagementApi.n(user)}`, undefined, true);
  }
}
