import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ApiTokensFile, ErrorCode, TaskerError, zodIssues, type ApiAction, type ApiTokenConfig } from '@tasker/protocol';

/** Who called, once their token is checked. */
export interface Principal {
  name: string;
  namespaces: '*' | string[];
  actions: ApiAction[];
}

/** An anonymous caller with every right, for `TASKER_API_INSECURE=true` only. */
export const INSECURE_PRINCIPAL: Principal = { name: 'anonymous (auth disabled)', namespaces: '*', actions: ['read', 'create', 'operate', 'admin'] };

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer tokens, each scoped to namespaces and actions. Tokens are compared by SHA-256 in
 * constant time; the configuration may hold `sha256:<hex>` instead of the secret itself.
 */
export class TokenAuthenticator {
  private readonly entries: Array<{ digest: Buffer; principal: Principal }>;

  constructor(tokens: ApiTokenConfig[]) {
    this.entries = tokens.map((t) => ({
      digest: t.token.startsWith('sha256:') ? Buffer.from(t.token.slice(7), 'hex') : sha256(t.token),
      principal: { name: t.name, namespaces: t.namespaces.includes('*') ? '*' : t.namespaces, actions: t.actions },
    }));
  }

  authenticate(header: string | undefined): Principal {
    if (!header) throw new TaskerError(ErrorCode.UNAUTHENTICATED, 'no API token: send "Authorization: Bearer <token>"');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new TaskerError(ErrorCode.UNAUTHENTICATED, 'the Authorization header must be "Bearer <token>"');
    const digest = sha256(m[1]!);
    const hit = this.entries.find((e) => e.digest.length === digest.length && timingSafeEqual(e.digest, digest));
    if (!hit) throw new TaskerError(ErrorCode.UNAUTHENTICATED, 'the API token is not valid');
    return hit.principal;
  }
}

/** Refuses unless the principal may do `action` in `namespace` (or in general, when namespace is null). */
export function authorize(p: Principal, action: ApiAction, namespace: string | null): void {
  if (!p.actions.includes(action) && !p.actions.includes('admin')) {
    throw new TaskerError(ErrorCode.FORBIDDEN, `token '${p.name}' may not ${action} (it may: ${p.actions.join(', ')})`);
  }
  if (namespace !== null && p.namespaces !== '*' && !p.namespaces.includes(namespace)) {
    throw new TaskerError(ErrorCode.FORBIDDEN, `token '${p.name}' may not ${action} in namespace '${namespace}' (its namespaces: ${p.namespaces.join(', ')})`);
  }
}

/** Reads tokens from a YAML or JSON file (`tokens: [...]`), naming every bad field. */
export function loadTokensFile(path: string): ApiTokenConfig[] {
  const parsed = ApiTokensFile.safeParse(parseYaml(readFileSync(path, 'utf8')));
  if (!parsed.success) {
    throw new Error(`API tokens file ${path} is invalid: ${zodIssues(parsed.error).map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  }
  return parsed.data.tokens;
}

/** Reads tokens from a JSON string (`TASKER_API_TOKENS`): an array, or `{tokens: [...]}`. */
export function parseTokensJson(text: string): ApiTokenConfig[] {
  const raw = JSON.parse(text) as unknown;
  const parsed = ApiTokensFile.safeParse(Array.isArray(raw) ? { tokens: raw } : raw);
  if (!parsed.success) {
    throw new Error(`TASKER_API_TOKENS is invalid: ${zodIssues(parsed.error).map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  }
  return parsed.data.tokens;
}
