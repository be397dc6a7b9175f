import { sql } from 'kysely';
import {
  ErrorCode,
  TaskerError,
  namespaceTopology,
  semverParts,
  type CompiledTemplate,
  type Names,
  type TopologyOptions,
} from '@tasker/protocol';
import type { Broker } from '@tasker/transport';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import type { NamespaceSummary, TemplateSummary } from '@tasker/protocol';

export function summarize(t: CompiledTemplate, createdAt: Date | string): TemplateSummary {
  return {
    namespace: t.namespace,
    name: t.name,
    version: t.version,
    description: t.description,
    steps: t.steps.length,
    created_at: new Date(createdAt).toISOString(),
  };
}

export interface RegisteredTemplate {
  id: string;
  template: CompiledTemplate;
}

/** A template this process holds for a request (TemplateRegistry.held). */
export interface HeldTemplate extends RegisteredTemplate {
  /**
   * Set when the request names no version: the template was the newest of its name when this
   * process last asked, and the creation must check it still is
   * (`[namespace, name, id]`, create_tasks_rows_newest, migration 0012).
   */
  newest: [string, string, string] | null;
}

/**
 * Templates by namespace, name and version. A registered version is immutable: registering
 * the same version with other content is refused (bump the version). Definitions are cached
 * by id forever, and so is which id an exact version is. Which version is newest is the
 * database's to say, so that several orchestrators agree: `resolve` asks it, and `held`
 * answers with the newest as last asked, for a creation that checks it in its own statement.
 */
export class TemplateRegistry {
  private readonly byId = new Map<string, CompiledTemplate>();
  private readonly declaredNamespaces = new Set<string>();
  /** Template ids by versionKey: exact versions never change. */
  private readonly exactIds = new Map<string, string>();
  /** The newest version's id by nameKey, as last resolved: to be checked before use. */
  private readonly newestIds = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly broker: Broker,
    private readonly n: Names,
    private readonly topologyOptions: TopologyOptions,
    private readonly logger: Logger,
  ) {}

  /** Registers a template and makes sure its namespace's queue exists. Idempotent. */
  async register(template: CompiledTemplate): Promise<{ id: string; created: boolean }> {
    const definition = JSON.stringify(template);
    const v = semverParts(template.version);
    const result = await this.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO namespaces (name) VALUES (${template.namespace}) ON CONFLICT DO NOTHING`.execute(trx);
      const inserted = await sql<{ id: string }>`
        INSERT INTO templates (namespace, name, version, major, minor, patch, prerelease, definition)
        VALUES (${template.namespace}, ${template.name}, ${template.version}, ${v.major}, ${v.minor}, ${v.patch},
                ${v.prerelease}, ${definition}::jsonb)
        ON CONFLICT (namespace, name, version) DO NOTHING
        RETURNING id`.execute(trx);
      if (inserted.rows[0]) return { id: inserted.rows[0].id, created: true };
      const existing = await sql<{ id: string; same: boolean }>`
        SELECT id, definition = ${definition}::jsonb AS same FROM templates
        WHERE namespace = ${template.namespace} AND name = ${template.name} AND version = ${template.version}`.execute(trx);
      const row = existing.rows[0]!;
      if (!row.same) {
        throw new TaskerError(
          ErrorCode.INVALID_STATE,
          `${template.namespace}.${template.name} version ${template.version} is already registered with different content; registered versions are immutable, so bump the version`,
        );
      }
      return { id: row.id, created: false };
    });
    this.byId.set(result.id, template);
    // A version registered here may be the newest now: the next creation asks.
    this.newestIds.delete(nameKey(template.namespace, template.name));
    await this.declareNamespace(template.namespace);
    if (result.created) {
      this.logger.info(
        { namespace: template.namespace, template: template.name, version: template.version },
        'template registered',
      );
    }
    return result;
  }

  /** Declares the step queue of a namespace (once per process; the broker re-declares on reconnect). */
  async declareNamespace(namespace: string): Promise<void> {
    if (this.declaredNamespaces.has(namespace)) return;
    this.declaredNamespaces.add(namespace);
    await this.broker.declare(namespaceTopology(this.n, namespace, this.topologyOptions));
  }

  /** Declares the queues of every namespace already in the database (at start). */
  async declareKnownNamespaces(): Promise<void> {
    const rows = await this.db.selectFrom('namespaces').select('name').execute();
    for (const r of rows) await this.declareNamespace(r.name);
  }

  /** Namespaces with their template counts (optionally only some). */
  async namespaces(only: string[] | '*'): Promise<NamespaceSummary[]> {
    const { rows } = await sql<{ name: string; templates: number; created_at: Date }>`
      SELECT n.name, count(t.id)::int AS templates, n.created_at FROM namespaces n
      LEFT JOIN templates t ON t.namespace = n.name
      WHERE ${only === '*'} OR n.name = ANY(${only === '*' ? [] : only}::text[])
      GROUP BY n.name ORDER BY n.name`.execute(this.db);
    return rows.map((r) => ({ name: r.name, templates: r.templates, created_at: new Date(r.created_at).toISOString() }));
  }

  /** Registered templates, newest version first within each name. */
  async list(namespace: string | null, only: string[] | '*'): Promise<TemplateSummary[]> {
    const { rows } = await sql<{ namespace: string; name: string; version: string; definition: CompiledTemplate; created_at: Date }>`
      SELECT namespace, name, version, definition, created_at FROM templates
      WHERE (${namespace}::text IS NULL OR namespace = ${namespace})
        AND (${only === '*'} OR namespace = ANY(${only === '*' ? [] : only}::text[]))
      ORDER BY namespace, name, major DESC, minor DESC, patch DESC, (prerelease = '') DESC, prerelease DESC`.execute(this.db);
    return rows.map((r) => summarize(r.definition, r.created_at));
  }

  /** One exact version with its compiled definition. */
  async describe(namespace: string, name: string, version: string): Promise<{ template: TemplateSummary; definition: CompiledTemplate }> {
    const hit = await this.resolve(namespace, name, version);
    const row = await this.db.selectFrom('templates').select('created_at').where('id', '=', hit.id).executeTakeFirstOrThrow();
    return { template: summarize(hit.template, row.created_at), definition: hit.template };
  }

  /** The template with this id (registered templates never change). */
  async get(id: string): Promise<CompiledTemplate> {
    const cached = this.byId.get(id);
    if (cached) return cached;
    const row = await this.db.selectFrom('templates').select('definition').where('id', '=', id).executeTakeFirst();
    if (!row) throw new TaskerError(ErrorCode.INTERNAL, `template id ${id} is missing`);
    const t = (typeof row.definition === 'string' ? JSON.parse(row.definition) : row.definition) as CompiledTemplate;
    this.byId.set(id, t);
    return t;
  }

  /**
   * The template for namespace, name and optional version as this process already holds it,
   * without asking the database; null if it does not (then `resolve`). An exact version is
   * held once resolved (registered versions never change). Without a version, the newest as
   * last resolved comes with `newest`, which the creation checks (create_tasks_rows_newest);
   * if it is stale, `forgetNewest` and resolve.
   */
  held(namespace: string, name: string, version?: string | null): HeldTemplate | null {
    const id = version == null ? this.newestIds.get(nameKey(namespace, name)) : this.exactIds.get(versionKey(namespace, name, version));
    const template = id === undefined ? undefined : this.byId.get(id);
    if (id === undefined || template === undefined) return null;
    return { id, template, newest: version == null ? [namespace, name, id] : null };
  }

  /** Forgets which version is newest for these `[namespace, name]`: the next creation asks the database. */
  forgetNewest(names: Array<readonly [string, string]>): void {
    for (const [namespace, name] of names) this.newestIds.delete(nameKey(namespace, name));
  }

  /**
   * Resolves namespace, name and optional version to a registered template; the newest
   * version when none is given. Refusals say which of the three is unknown.
   */
  async resolve(namespace: string, name: string, version?: string | null): Promise<RegisteredTemplate> {
    const rows = await sql<{ id: string; version: string }>`/* prepared:template_resolve */
      SELECT id, version FROM templates
      WHERE namespace = ${namespace} AND name = ${name} AND (${version ?? null}::text IS NULL OR version = ${version ?? null})
      ORDER BY major DESC, minor DESC, patch DESC, (prerelease = '') DESC, prerelease DESC
      LIMIT 1`.execute(this.db);
    const hit = rows.rows[0];
    if (hit) {
      const template = await this.get(hit.id);
      this.exactIds.set(versionKey(namespace, name, hit.version), hit.id);
      if (version == null) this.newestIds.set(nameKey(namespace, name), hit.id);
      return { id: hit.id, template };
    }
    const ns = await this.db.selectFrom('namespaces').select('name').where('name', '=', namespace).executeTakeFirst();
    if (!ns) {
      throw new TaskerError(ErrorCode.UNKNOWN_NAMESPACE, `namespace '${namespace}' has no registered templates`);
    }
    const versions = await this.db
      .selectFrom('templates')
      .select('version')
      .where('namespace', '=', namespace)
      .where('name', '=', name)
      .execute();
    if (versions.length === 0) {
      throw new TaskerError(ErrorCode.UNKNOWN_TEMPLATE, `namespace '${namespace}' has no template named '${name}'`);
    }
    throw new TaskerError(
      ErrorCode.UNKNOWN_VERSION,
      `${namespace}.${name} has no version '${version}' (registered: ${versions.map((r) => r.version).join(', ')})`,
    );
  }
}

/** The key of a template name in a namespace: `namespace NUL name`. */
function nameKey(namespace: string, name: string): string {
  return `${namespace}\u0000${name}`;
}

/** The key of one version of a template: `namespace NUL name NUL version`. */
function versionKey(namespace: string, name: string, version: string): string {
  return `${namespace}\u0000${name}\u0000${version}`;
}
