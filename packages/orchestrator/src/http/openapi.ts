import { z } from 'zod';
import { ErrorResponse, PROTOCOL_VERSION, type ApiAction } from '@tasker/protocol';

/** One route as documented: its shapes are the zod schemas the server parses with. */
export interface RouteDoc {
  method: 'get' | 'post';
  path: string;
  summary: string;
  /** The token action it needs; null: no token needed. */
  action: ApiAction | null;
  body?: z.ZodType;
  /** The body is a template as YAML text (or JSON). */
  bodyText?: boolean;
  query?: z.ZodObject;
  response: z.ZodType;
}

const schema = (s: z.ZodType, io: 'input' | 'output') => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
};

/** The OpenAPI 3.1 document, generated from the route table (served at /openapi.json). */
export function buildOpenApi(routes: RouteDoc[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { description: 'Refused: `{error: {code, message, issues?}}`', content: { 'application/json': { schema: schema(ErrorResponse, 'output') } } };
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = r.query
      ? Object.entries((schema(r.query, 'input').properties ?? {}) as Record<string, unknown>).map(([name, s]) => ({ name, in: 'query', required: false, schema: s }))
      : [];
    const op: Record<string, unknown> = {
      summary: r.summary,
      ...(r.action ? { security: [{ bearer: [] }], 'x-tasker-action': r.action } : { security: [] }),
      parameters: [...params, ...query],
      responses: {
        [r.method === 'post' && r.path === '/v1/tasks' ? '201' : '200']: { description: 'OK', content: { 'application/json': { schema: schema(r.response, 'output') } } },
        '400': error,
        ...(r.action ? { '401': error, '403': error } : {}),
        '404': error,
        '409': error,
      },
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: schema(r.body, 'input') } } };
    if (r.bodyText) {
      op.requestBody = {
        required: true,
        content: { 'application/yaml': { schema: { type: 'string', description: 'A task template as YAML' } }, 'application/json': { schema: { type: 'object' } } },
      };
    }
    (paths[r.path] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Tasker orchestrator API', version: `protocol ${PROTOCOL_VERSION}` },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
