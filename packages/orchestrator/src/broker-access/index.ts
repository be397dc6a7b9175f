/**
 * Broker access (issue 6): team isolation enforced by RabbitMQ itself. One user per role
 * (orchestrator, service, each namespace) with permission regexes and topic permissions,
 * provisioned by {@link applyBrokerAccess}; and the orchestrator's check of each result's
 * validated `user_id` ({@link ResultOriginCheck}). See infra/README.md for the table.
 */
export {
  applyBrokerAccess,
  formatBrokerAccessReport,
  BrokerAccessConflictError,
  BROKER_ACCESS_FILE_VARIABLE,
  DEFAULT_BROKER_ACCESS_FILE,
  type ApplyBrokerAccessOptions,
  type BrokerAccessReport,
  type BrokerAccessReportItem,
  type ReportOutcome,
} from './apply.ts';
export {
  BrokerAccessFileSchema,
  loadBrokerAccessFile,
  parseBrokerAccess,
  namespaceUser,
  type BrokerAccessConfig,
  type BrokerAccessFile,
  type BrokerAccessOverrides,
} from './config-file.ts';
export { ManagementApi, ManagementApiError, DEFAULT_MANAGEMENT_URL, MANAGEMENT_URL_VARIABLE } from './management-api.ts';
export { passwordVariable, resolvePasswords, MissingPasswordError, PASSWORD_VARIABLE_PREFIX, SECRETS_FILE_VARIABLE } from './passwords.ts';
export { planGrants, NOTHING, type UserGrant, type TopicGrant } from './permissions.ts';
export { planBrokerAccess, mergeTopologies, type BrokerAccessPlan, type PlanItem } from './plan.ts';
export { ResultOriginCheck, resolveResultOrigin, resultOriginFromFile, type ResultOriginOptions } from './result-origin.ts';
