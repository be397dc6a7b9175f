/**
 * PostgreSQL and RabbitMQ for a chaos run, and the two restarts the run inflicts on them.
 *
 * By default the run owns them: a PostgreSQL cluster (Debian's `initdb` / `pg_ctl`, run as
 * the `postgres` user, fsync on) and a second RabbitMQ node (`rabbitmq-server -detached`,
 * node `tasker-chaos@localhost`), on their own ports with their data under os.tmpdir().
 * Restarting them disturbs nobody else: other test suites use the machine's main
 * PostgreSQL (5432) and RabbitMQ (5672). Both are stopped and their folder removed at the
 * end, and a run that was killed before cleaning up is cleaned up by the next one (a state
 * file in os.tmpdir() names what it left).
 *
 * `--shared-services` uses the main ones instead (for CI, where nothing else runs) and
 * restarts them with the machine's service commands (`pg_ctlcluster`, `rabbitmqctl stop` +
 * `rabbitmq-server -detached`); whatever happens they are started again at the end.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { alive, command, portOpen, say, sleep, waitUntil } from './exec.ts';

/** Name of the database that holds both the orchestrators' schema and the handlers' schema. */
export const CHAOS_DATABASE = 'tasker_chaos';

export interface Outage {
  /** When the service was taken down (epoch ms). */
  downAt: number;
  /** When it accepted connections again (epoch ms). */
  upAt: number;
}

export interface Services {
  readonly kind: 'dedicated' | 'shared';
  /** URL of the chaos database (created by `start`). */
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  /** What to show in the report. */
  describe(): Record<string, unknown>;
  start(): Promise<void>;
  /** Stops PostgreSQL, waits `pauseMs`, starts it again. */
  restartPostgres(pauseMs: number): Promise<Outage>;
  /** Stops RabbitMQ, waits `pauseMs`, starts it again. */
  restartRabbitmq(pauseMs: number): Promise<Outage>;
  /** Starts whichever of the two is not running (after an error in a restart). */
  ensureUp(): Promise<void>;
  /** Copies the services' own logs into the run's folder. */
  collectLogs(outDir: string): void;
  /** Dedicated: stops both and removes their folder. Shared: makes sure both run. */
  teardown(options: { keep: boolean }): Promise<void>;
}

/** Highest PostgreSQL major version installed the Debian way. */
function debianPgBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${root} (Debian's postgresql package)`);
  return join(root, versions[0]!, 'bin');
}

function uidOf(user: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', user]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', user]).toString().trim());
  return { uid, gid };
}

async function createDatabaseIfMissing(adminUrl: string, database: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await c.query(`CREATE DATABASE "${database}"`);
  } finally {
    await c.end();
  }
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

// ---------------------------------------------------------------------------------------
// Dedicated instances

interface DedicatedState {
  runnerPid: number;
  baseDir: string;
  pgBin: string;
  pgData: string;
  rabbitNode: string;
  rabbitPidFile: string;
}

const STATE_FILE = join(tmpdir(), 'tasker-chaos-services.json');

export interface DedicatedOptions {
  pgPort: number;
  amqpPort: number;
  distPort: number;
}

export class DedicatedServices implements Services {
  readonly kind = 'dedicated' as const;
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  private readonly node = 'tasker-chaos@localhost';
  private readonly pgBin = debianPgBin();
  private baseDir = '';
  private pgDir = '';
  private rabbitDir = '';

  constructor(private readonly o: DedicatedOptions) {
    this.databaseUrl = `postgres://postgres@127.0.0.1:${o.pgPort}/${CHAOS_DATABASE}`;
    this.amqpUrl = `amqp://guest:guest@127.0.0.1:${o.amqpPort}`;
  }

  describe(): Record<string, unknown> {
    return {
      kind: this.kind,
      postgres: { port: this.o.pgPort, bin: this.pgBin, data: join(this.pgDir, 'data'), fsync: 'on' },
      rabbitmq: { node: this.node, port: this.o.amqpPort, dist_port: this.o.distPort, dir: this.rabbitDir },
    };
  }

  private get pgData(): string {
    return join(this.pgDir, 'data');
  }

  private pgCtl(args: string[], timeoutMs = 90_000) {
    return command('runuser', ['-u', 'postgres', '--', join(this.pgBin, 'pg_ctl'), ...args], { timeoutMs, cwd: this.pgDir });
  }

  private pgStartArgs(): string[] {
    // -k: the socket in our own folder, not the main cluster's /var/run/postgresql.
    const opts = `-p ${this.o.pgPort} -k ${this.pgDir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on`;
    return ['-D', this.pgData, '-o', opts, '-l', join(this.pgDir, 'postgres.log'), '-w', '-t', '60', 'start'];
  }

  private rabbitEnv(): NodeJS.ProcessEnv {
    const d = this.rabbitDir;
    return {
      ...process.env,
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(this.o.amqpPort),
      RABBITMQ_DIST_PORT: String(this.o.distPort),
      RABBITMQ_MNESIA_BASE: join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: join(d, 'log'),
      RABBITMQ_PID_FILE: join(d, 'rabbitmq.pid'),
      RABBITMQ_CONFIG_FILE: join(d, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(d, 'enabled_plugins'),
    };
  }

  async start(): Promise<void> {
    if (userInfo().uid !== 0) {
      throw new Error('the chaos suite runs as root: it starts PostgreSQL as the postgres user and RabbitMQ as the rabbitmq user');
    }
    await cleanUpStaleRun();
    for (const [what, port] of [
      ['PostgreSQL', this.o.pgPort],
      ['RabbitMQ', this.o.amqpPort],
      ['RabbitMQ distribution', this.o.distPort],
    ] as const) {
      if (await portOpen(port)) {
        throw new Error(
          `port ${port} (for the chaos ${what}) is taken; choose another with --pg-port / --amqp-port / --dist-port, or stop what listens there`,
        );
      }
    }
    this.baseDir = mkdtempSync(join(tmpdir(), 'tasker-chaos-'));
    chmodSync(this.baseDir, 0o755);
    this.pgDir = join(this.baseDir, 'postgres');
    this.rabbitDir = join(this.baseDir, 'rabbitmq');
    const state: DedicatedState = {
      runnerPid: process.pid,
      baseDir: this.baseDir,
      pgBin: this.pgBin,
      pgData: this.pgData,
      rabbitNode: this.node,
      rabbitPidFile: join(this.rabbitDir, 'rabbitmq.pid'),
    };
    writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));

    // PostgreSQL: a fresh cluster owned by postgres.
    const pgUser = uidOf('postgres');
    mkdirSync(this.pgDir);
    chownSync(this.pgDir, pgUser.uid, pgUser.gid);
    await command('runuser', ['-u', 'postgres', '--', join(this.pgBin, 'initdb'), '-D', this.pgData, '--auth=trust', '-U', 'postgres', '-E', 'UTF8'], {
      timeoutMs: 120_000,
      cwd: this.pgDir,
    });
    await this.pgCtl(this.pgStartArgs());

    // RabbitMQ: a second node, owned by rabbitmq (the Debian wrapper runs the server as that user).
    const rmqUser = uidOf('rabbitmq');
    for (const d of [this.rabbitDir, join(this.rabbitDir, 'mnesia'), join(this.rabbitDir, 'log')]) {
      mkdirSync(d, { recursive: true });
      chownSync(d, rmqUser.uid, rmqUser.gid);
    }
    const files: Array<[string, string]> = [
      ['enabled_plugins', '[].\n'],
      ['rabbitmq.conf', `listeners.tcp.default = 127.0.0.1:${this.o.amqpPort}\nloopback_users.guest = true\n`],
    ];
    for (const [name, text] of files) {
      writeFileSync(join(this.rabbitDir, name), text);
      chownSync(join(this.rabbitDir, name), rmqUser.uid, rmqUser.gid);
    }
    await this.startRabbit();
    await createDatabaseIfMissing(`postgres://postgres@127.0.0.1:${this.o.pgPort}/postgres`, CHAOS_DATABASE);
  }

  private async startRabbit(): Promise<void> {
    await command('rabbitmq-server', ['-detached'], { env: this.rabbitEnv(), timeoutMs: 60_000, cwd: this.rabbitDir });
    // await_startup waits for the node to boot (and for it to exist at all); retry while it
    // is not yet registered.
    const ok = await waitUntil(async () => {
      const r = await command('rabbitmqctl', ['-n', this.node, '-q', 'await_startup', '--timeout', '30'], {
        timeoutMs: 40_000,
        allowFailure: true,
      });
      return r.code === 0 && (await portOpen(this.o.amqpPort));
    }, 90_000, 1000);
    if (!ok) throw new Error(`the chaos RabbitMQ node ${this.node} did not start within 90 s (log: ${join(this.rabbitDir, 'log')})`);
  }

  private async stopRabbit(): Promise<void> {
    const pidFile = join(this.rabbitDir, 'rabbitmq.pid');
    const r = await command('rabbitmqctl', ['-n', this.node, 'stop', pidFile], { timeoutMs: 60_000, allowFailure: true });
    if (r.code !== 0) killPidFile(pidFile);
    await waitUntil(async () => !(await portOpen(this.o.amqpPort)), 15_000);
  }

  async restartPostgres(pauseMs: number): Promise<Outage> {
    const downAt = Date.now();
    // Immediate: a crash as far as the clients can tell; the start replays the WAL.
    await this.pgCtl(['-D', this.pgData, '-m', 'immediate', '-w', 'stop']);
    await sleep(pauseMs);
    await this.pgCtl(this.pgStartArgs());
    return { downAt, upAt: Date.now() };
  }

  async restartRabbitmq(pauseMs: number): Promise<Outage> {
    const downAt = Date.now();
    await this.stopRabbit();
    await sleep(pauseMs);
    await this.startRabbit();
    return { downAt, upAt: Date.now() };
  }

  async ensureUp(): Promise<void> {
    if (!(await portOpen(this.o.pgPort))) {
      say('PostgreSQL (chaos) is down: starting it');
      await this.pgCtl(this.pgStartArgs());
    }
    if (!(await portOpen(this.o.amqpPort))) {
      say('RabbitMQ (chaos) is down: starting it');
      await this.startRabbit();
    }
  }

  collectLogs(outDir: string): void {
    if (!this.baseDir) return;
    const pgLog = join(this.pgDir, 'postgres.log');
    if (existsSync(pgLog)) copyFileSync(pgLog, join(outDir, 'postgres.log'));
    const logDir = join(this.rabbitDir, 'log');
    if (existsSync(logDir)) {
      for (const f of readdirSync(logDir)) {
        if (f.endsWith('.log')) copyFileSync(join(logDir, f), join(outDir, `rabbitmq-${f.replace(/@.*?(_|\.)/, '$1')}`));
      }
    }
  }

  async teardown(options: { keep: boolean }): Promise<void> {
    if (!this.baseDir) return;
    await this.stopRabbit().catch((err: Error) => say(`could not stop the chaos RabbitMQ: ${err.message}`));
    if (existsSync(join(this.pgData, 'postmaster.pid'))) {
      await this.pgCtl(['-D', this.pgData, '-m', 'fast', '-w', 'stop']).catch((err: Error) =>
        say(`could not stop the chaos PostgreSQL: ${err.message}`),
      );
    }
    if (options.keep) {
      say(`kept the services' folder ${this.baseDir} (--keep)`);
    } else {
      rmSync(this.baseDir, { recursive: true, force: true });
    }
    if (existsSync(STATE_FILE)) unlinkSync(STATE_FILE);
  }
}

function killPidFile(pidFile: string): void {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
  } catch {
    // no pid file: nothing to kill
  }
}

/** Stops and removes what a previous run left (it was killed before its own cleanup). */
async function cleanUpStaleRun(): Promise<void> {
  if (!existsSync(STATE_FILE)) return;
  let s: DedicatedState;
  try {
    s = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as DedicatedState;
  } catch {
    unlinkSync(STATE_FILE);
    return;
  }
  if (s.runnerPid !== process.pid && alive(s.runnerPid)) {
    throw new Error(`another chaos run (pid ${s.runnerPid}) owns the dedicated services (${s.baseDir}); wait for it to end`);
  }
  say(`a previous chaos run (pid ${s.runnerPid}) left its services in ${s.baseDir}: stopping them`);
  await command('rabbitmqctl', ['-n', s.rabbitNode, 'stop', s.rabbitPidFile], { timeoutMs: 30_000, allowFailure: true });
  killPidFile(s.rabbitPidFile);
  if (existsSync(join(s.pgData, 'postmaster.pid'))) {
    await command('runuser', ['-u', 'postgres', '--', join(s.pgBin, 'pg_ctl'), '-D', s.pgData, '-m', 'immediate', '-w', 'stop'], {
      timeoutMs: 30_000,
      allowFailure: true,
    });
  }
  rmSync(s.baseDir, { recursive: true, force: true });
  unlinkSync(STATE_FILE);
}

// ---------------------------------------------------------------------------------------
// The machine's main services (--shared-services)

export class SharedServices implements Services {
  readonly kind = 'shared' as const;
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  private readonly pgPort: number;
  private readonly amqpPort: number;
  private readonly pgVersion: string;

  constructor() {
    const baseUrl = process.env['TASKER_DATABASE_URL'] ?? 'postgres://postgres:postgres@127.0.0.1:5432/tasker';
    this.databaseUrl = withDatabase(baseUrl, CHAOS_DATABASE);
    this.amqpUrl = process.env['TASKER_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
    this.pgPort = Number(new URL(this.databaseUrl).port || 5432);
    this.amqpPort = Number(new URL(this.amqpUrl).port || 5672);
    const versions = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
    if (versions.length === 0) throw new Error('--shared-services restarts the main cluster with pg_ctlcluster, but /etc/postgresql has none');
    this.pgVersion = versions[0]!;
  }

  describe(): Record<string, unknown> {
    return {
      kind: this.kind,
      postgres: { url: this.databaseUrl.replace(/:[^:@/]*@/, ':***@'), cluster: `${this.pgVersion}/main` },
      rabbitmq: { url: this.amqpUrl.replace(/:[^:@/]*@/, ':***@') },
    };
  }

  async start(): Promise<void> {
    await this.ensureUp();
    await createDatabaseIfMissing(withDatabase(this.databaseUrl, 'postgres'), CHAOS_DATABASE);
  }

  private pgCluster(action: string, extra: string[] = []) {
    return command('pg_ctlcluster', ['--skip-systemctl-redirect', this.pgVersion, 'main', action, ...extra], { timeoutMs: 90_000 });
  }

  private async startRabbit(): Promise<void> {
    await command('rabbitmq-server', ['-detached'], { timeoutMs: 60_000, cwd: '/var/lib/rabbitmq' });
    const ok = await waitUntil(async () => {
      const r = await command('rabbitmqctl', ['-q', 'await_startup', '--timeout', '30'], { timeoutMs: 40_000, allowFailure: true });
      return r.code === 0 && (await portOpen(this.amqpPort));
    }, 90_000, 1000);
    if (!ok) throw new Error('RabbitMQ did not start within 90 s');
  }

  async restartPostgres(pauseMs: number): Promise<Outage> {
    const downAt = Date.now();
    await this.pgCluster('stop', ['-m', 'immediate']);
    await sleep(pauseMs);
    await this.pgCluster('start');
    await waitUntil(() => portOpen(this.pgPort), 30_000);
    return { downAt, upAt: Date.now() };
  }

  async restartRabbitmq(pauseMs: number): Promise<Outage> {
    const downAt = Date.now();
    await command('rabbitmqctl', ['stop'], { timeoutMs: 60_000, allowFailure: true });
    await waitUntil(async () => !(await portOpen(this.amqpPort)), 15_000);
    await sleep(pauseMs);
    await this.startRabbit();
    return { downAt, upAt: Date.now() };
  }

  async ensureUp(): Promise<void> {
    if (!(await portOpen(this.pgPort))) {
      say('PostgreSQL is down: starting it');
      await this.pgCluster('start');
      await waitUntil(() => portOpen(this.pgPort), 30_000);
    }
    if (!(await portOpen(this.amqpPort))) {
      say('RabbitMQ is down: starting it');
      await this.startRabbit();
    }
  }

  collectLogs(): void {
    // The main services log where they always do (/var/log/postgresql, /var/log/rabbitmq).
  }

  async teardown(): Promise<void> {
    // Whatever happened, the machine's services are left running.
    for (let i = 0; i < 3; i++) {
      try {
        await this.ensureUp();
        return;
      } catch (err) {
        say(`could not bring the services back up (try ${i + 1} of 3): ${(err as Error).message}`);
        await sleep(2000);
      }
    }
  }
}
