import type { QueueType } from '@tasker/protocol';

export type Mode = 'full' | 'quick' | 'tiny';

export const SECTIONS = ['throughput', 'overhead', 'create', 'limit', 'peers', 'memory', 'scale', 'languages'] as const;
export type Section = (typeof SECTIONS)[number];

export const PEERS = [
  'bullmq_flow',
  'bullmq_flow_fsync',
  'bullmq_successors',
  'bullmq_successors_fsync',
  'graphile_worker',
  'graphile_worker_batched',
  'pg_boss',
  'pg_boss_notify',
] as const;
export type PeerName = (typeof PEERS)[number];

/** Worker languages of the `languages` section, each by its conformance worker. */
export const LANGUAGES = ['typescript', 'python', 'ruby', 'rust'] as const;
export type Language = (typeof LANGUAGES)[number];

/** How much of everything a mode does. Every loop of the bench is bounded by these counts and by `sectionTimeoutMs`. */
export interface Sizes {
  /** Diamond tasks of the throughput section (and of the 1-vs-2-orchestrator run). */
  throughputTasks: number;
  /** Also measure throughput with the tasks created over HTTP (the headline creates them with AMQP task requests). */
  throughputOverHttp: boolean;
  /**
   * Unmeasured tasks first, in every throughput run of every system. In a full run, as many as
   * a measured run: with 100, the first of three repetitions ran at 0.63–0.84 of the next two in
   * every headline of sessions 23–26 (V8 had not yet optimized the orchestrator's and the
   * worker's code for the load; BullMQ's at 0.70–1.09), and the median was a warming run
   * (bench/RESULTS.md, session 26).
   */
  warmupTasks: number;
  /** 4-step linear tasks run one at a time. */
  overheadTasks: number;
  /**
   * Before the one-at-a-time measurements (the per-step overhead, the raw two-hop latency, each
   * language's steps), run the same load unmeasured for this long: such a load gets faster over
   * its first seconds, mostly as V8 optimizes the Node processes' code for it (bench/README.md,
   * "Settling").
   */
  settleMs: number;
  /** Tasks created per transport (HTTP, AMQP), timed. */
  createTasks: number;
  /** Untimed tasks each creation measurement begins with, on the connections it then times. */
  createWarmup: number;
  /** Messages through the raw two hops, per queue type. */
  twoHopMessages: number;
  /** One-at-a-time messages for the two-hop latency; one-row commits for the commit latency. */
  latencySamples: number;
  /** Rows of the batched compare-and-set. */
  casRows: number;
  /** Diamond tasks per peer (pg-boss without notify: `pgbossTasks`, it polls). */
  peerTasks: number;
  pgbossTasks: number;
  /** Tasks in flight for the memory measurement. */
  memoryTasks: number;
  /** Languages the `languages` section measures (the others are reported as not measured in this mode). */
  languages: readonly Language[];
  /** Per language: steps timed one at a time, after `languageWarmup` unmeasured ones. */
  languageSteps: number;
  languageWarmup: number;
  /** Per language: steps kept in flight for the rate, and the steps of that measurement. */
  languageInFlight: number;
  languageInFlightSteps: number;
  /** How long the Rust conformance worker's build may take (each profile tried). */
  rustBuildTimeoutMs: number;
  /** Longest any one measurement may take. */
  sectionTimeoutMs: number;
}

export const SIZES: Record<Mode, Sizes> = {
  full: {
    throughputTasks: 2000,
    throughputOverHttp: true,
    warmupTasks: 2000,
    overheadTasks: 200,
    settleMs: 10_000,
    createTasks: 3000,
    createWarmup: 1000,
    twoHopMessages: 20_000,
    latencySamples: 200,
    casRows: 40_000,
    peerTasks: 2000,
    pgbossTasks: 200,
    memoryTasks: 10_000,
    languages: LANGUAGES,
    languageSteps: 300,
    languageWarmup: 20,
    languageInFlight: 200,
    languageInFlightSteps: 1000,
    rustBuildTimeoutMs: 300_000,
    sectionTimeoutMs: 180_000,
  },
  quick: {
    throughputTasks: 800,
    throughputOverHttp: false,
    warmupTasks: 40,
    overheadTasks: 50,
    settleMs: 3000,
    createTasks: 600,
    createWarmup: 200,
    twoHopMessages: 4000,
    latencySamples: 100,
    casRows: 8000,
    peerTasks: 400,
    pgbossTasks: 40,
    memoryTasks: 1500,
    languages: LANGUAGES,
    languageSteps: 100,
    languageWarmup: 10,
    languageInFlight: 200,
    languageInFlightSteps: 200,
    rustBuildTimeoutMs: 120_000,
    sectionTimeoutMs: 20_000,
  },
  tiny: {
    throughputTasks: 6,
    throughputOverHttp: true,
    warmupTasks: 2,
    overheadTasks: 3,
    settleMs: 0,
    createTasks: 6,
    createWarmup: 2,
    twoHopMessages: 100,
    latencySamples: 5,
    casRows: 400,
    peerTasks: 4,
    pgbossTasks: 2,
    memoryTasks: 10,
    // TypeScript only: the other runtimes are optional on a machine, and the smoke run stays short.
    languages: ['typescript'],
    languageSteps: 10,
    languageWarmup: 3,
    languageInFlight: 10,
    languageInFlightSteps: 20,
    rustBuildTimeoutMs: 120_000,
    sectionTimeoutMs: 20_000,
  },
};

export interface Options {
  mode: Mode;
  sizes: Sizes;
  queueType: QueueType;
  /** The results queue's type (TASKER_RESULTS_QUEUE_TYPE of Tasker's orchestrators); the same as `queueType` unless asked. */
  resultsQueueType: QueueType;
  /** Most steps in one step message (TASKER_STEPS_PER_MESSAGE of Tasker's orchestrators). */
  stepsPerMessage: number;
  /** Most task requests in one AMQP message (the bench's AmqpTaskRequester, `maxRequestsPerMessage`). */
  requestsPerMessage: number;
  json: string | null;
  outDir: string;
  sections: Set<Section>;
  peers: PeerName[];
  /** `--cpu-prof` Tasker's orchestrator and worker of the main run. */
  profile: boolean;
  /** Profile Tasker's orchestrators and worker over the measured throughput runs only (after the warm-up). */
  profileWindow: boolean;
  /** Time every SQL statement and publisher confirm inside Tasker's processes (main run). */
  trace: boolean;
  /** What-if: TCP_NODELAY on Tasker's AMQP sockets (see experiments.ts). */
  nodelay: boolean;
  /** Where each step's time goes in the overhead section: a timeline of events in Tasker's processes. */
  timeline: boolean;
  /** Before each measurement, wait up to this long for the machine's CPUs to be under 30 % busy. */
  waitQuietSec: number;
  /** Throughput measurements (Tasker's and each peer's) in a row; the median is reported. */
  repeat: number;
  /** After the peers, pairs of Tasker's throughput and each BullMQ configuration's, run alternately (0: none). */
  paired: number;
  /** Finished diamond tasks written into the main run's schema before it measures (0: none). */
  prefill: number;
  concurrency: number;
  databaseUrl: string;
  amqpUrl: string;
  redisUrl: string;
}

export const USAGE = `pnpm bench [options]

  --quick                 smaller counts; the whole run takes under two minutes
  --tiny                  a handful of tasks per section (the test suite's smoke run)
  --json FILE             also write the figures as JSON
  --queue-type TYPE       classic or quorum work queues for Tasker (default: TASKER_QUEUE_TYPE, else quorum)
  --results-queue-type TYPE  classic or quorum for Tasker's results queue alone (default: TASKER_RESULTS_QUEUE_TYPE,
                          else the work queues' type); the overhead target follows the step queues' type
  --steps-per-message N  TASKER_STEPS_PER_MESSAGE of Tasker's orchestrators (default: that variable, else 16;
                          the orchestrator's own default is 1, for workers that predate 'steps' messages)
  --requests-per-message N  most task requests in one AMQP message (the requester's maxRequestsPerMessage;
                          default 100, its own default; 1 sends each request alone)
  --peers LIST            comma-separated peers, or all / none / bullmq / graphile / pgboss (default: all)
  --only LIST             run only these sections: ${SECTIONS.join(', ')}
  --skip LIST             skip these sections
  --tasks N               diamond tasks of the throughput runs (Tasker's and the peers')
  --warmup N              unmeasured diamond tasks before every throughput run of every system (default:
                          2000 in a full run, as many as a measured run; 40 quick; pg-boss without notify
                          takes at most 2)
  --profile               node --cpu-prof for Tasker's orchestrator and worker (<out>/run-…/profiles/)
  --profile-window        a CPU profile of Tasker's orchestrator and worker over the measured throughput runs
                          only, after the warm-up (<out>/run-…/profiles/<process>.throughput.cpuprofile)
  --trace                 time each SQL statement and publisher confirm in Tasker's processes
  --nodelay               what-if: TCP_NODELAY on Tasker's AMQP sockets (amqplib leaves Nagle on)
  --timeline              where each step's time goes in the overhead section (events in Tasker's processes)
  --wait-quiet SECONDS    before each measurement, wait up to SECONDS for the CPUs to be under 30 % busy
  --repeat N              throughput of Tasker and of each peer N times in a row; report the median
  --paired N              after the peers, Tasker's throughput and each BullMQ configuration's alternately,
                          N pairs each (Tasker first, then the peer first, in turn): each pair's ratio and
                          their median, which the machine's drift between sections does not move
  --prefill N             before sections 1-3, fill their schema with N finished diamond tasks (steps and audit
                          rows; ids as the orchestrator makes them), then VACUUM ANALYZE and CHECKPOINT: the tables of
                          a running installation instead of empty ones (sections 1-3 only)
  --out DIR               logs, profiles (default: bench/out)
  --help

Services: TASKER_DATABASE_URL, TASKER_AMQP_URL, BENCH_REDIS_URL (defaults: the local ones on 127.0.0.1).`;

function list(v: string | undefined, flag: string): string[] {
  if (!v || v.startsWith('--')) throw new Error(`${flag} needs a value`);
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

export function parseOptions(argv: string[], defaultOutDir: string): Options | 'help' {
  let mode: Mode = 'full';
  let json: string | null = null;
  let queueType = (process.env.TASKER_QUEUE_TYPE as QueueType | undefined) ?? 'quorum';
  let resultsQueueType = (process.env.TASKER_RESULTS_QUEUE_TYPE as QueueType | undefined) || null;
  let stepsPerMessage = Number(process.env.TASKER_STEPS_PER_MESSAGE || 16);
  let requestsPerMessage = 100;
  let outDir = defaultOutDir;
  let only: Section[] | null = null;
  const skip = new Set<Section>();
  let peers: PeerName[] = [...PEERS];
  let tasks: number | null = null;
  let warmup: number | null = null;
  let profile = false;
  let profileWindow = false;
  let trace = false;
  let nodelay = false;
  let timeline = false;
  let waitQuietSec = 0;
  let repeat = 1;
  let paired = 0;
  let prefill = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--help':
      case '-h':
        return 'help';
      case '--quick':
        mode = 'quick';
        break;
      case '--tiny':
        mode = 'tiny';
        break;
      case '--json':
        json = value();
        break;
      case '--queue-type': {
        const v = value();
        if (v !== 'classic' && v !== 'quorum') throw new Error(`--queue-type is classic or quorum, not '${v}'`);
        queueType = v;
        break;
      }
      case '--results-queue-type': {
        const v = value();
        if (v !== 'classic' && v !== 'quorum') throw new Error(`--results-queue-type is classic or quorum, not '${v}'`);
        resultsQueueType = v;
        break;
      }
      case '--steps-per-message': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error('--steps-per-message is a whole number from 1 to 100');
        stepsPerMessage = n;
        break;
      }
      case '--requests-per-message': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 500) throw new Error('--requests-per-message is a whole number from 1 to 500');
        requestsPerMessage = n;
        break;
      }
      case '--peers': {
        const wanted = list(argv[++i], a);
        const out = new Set<PeerName>();
        for (const w of wanted) {
          if (w === 'all') PEERS.forEach((p) => out.add(p));
          else if (w === 'none') continue;
          else if (w === 'bullmq' || w === 'graphile' || w === 'pgboss') {
            const stem = w === 'pgboss' ? 'pg_boss' : w;
            PEERS.filter((p) => p.startsWith(stem)).forEach((p) => out.add(p));
          } else if ((PEERS as readonly string[]).includes(w)) out.add(w as PeerName);
          else throw new Error(`unknown peer '${w}'; peers: ${PEERS.join(', ')}`);
        }
        peers = PEERS.filter((p) => out.has(p));
        break;
      }
      case '--only':
      case '--skip': {
        const names = list(argv[++i], a);
        for (const n of names) if (!(SECTIONS as readonly string[]).includes(n)) throw new Error(`unknown section '${n}'; sections: ${SECTIONS.join(', ')}`);
        if (a === '--only') only = names as Section[];
        else names.forEach((n) => skip.add(n as Section));
        break;
      }
      case '--tasks': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new Error('--tasks is a whole number from 1 to 100000');
        tasks = n;
        break;
      }
      case '--warmup': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 0 || n > 100_000) throw new Error('--warmup is a whole number from 0 to 100000');
        warmup = n;
        break;
      }
      case '--profile':
        profile = true;
        break;
      case '--profile-window':
        profileWindow = true;
        break;
      case '--trace':
        trace = true;
        break;
      case '--nodelay':
        nodelay = true;
        break;
      case '--timeline':
        timeline = true;
        break;
      case '--wait-quiet': {
        const n = Number(value());
        if (!Number.isFinite(n) || n < 0 || n > 600) throw new Error('--wait-quiet is seconds from 0 to 600');
        waitQuietSec = n;
        break;
      }
      case '--repeat': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error('--repeat is a whole number from 1 to 9');
        repeat = n;
        break;
      }
      case '--prefill': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 0) throw new Error('--prefill is a whole number of tasks');
        prefill = n;
        break;
      }
      case '--paired': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 0 || n > 9) throw new Error('--paired is a whole number from 0 to 9');
        paired = n;
        break;
      }
      case '--out':
        outDir = value();
        break;
      default:
        throw new Error(`unknown option '${a}'\n\n${USAGE}`);
    }
  }
  const sizes = { ...SIZES[mode] };
  if (tasks !== null) {
    sizes.throughputTasks = tasks;
    sizes.peerTasks = tasks;
  }
  if (warmup !== null) sizes.warmupTasks = warmup;
  const sections = new Set<Section>((only ?? [...SECTIONS]).filter((s) => !skip.has(s)));
  if (peers.length === 0) sections.delete('peers');
  return {
    mode,
    sizes,
    queueType,
    resultsQueueType: resultsQueueType ?? queueType,
    stepsPerMessage,
    requestsPerMessage,
    json,
    outDir,
    sections,
    peers,
    profile,
    profileWindow,
    trace,
    nodelay,
    timeline,
    waitQuietSec,
    repeat,
    paired,
    prefill,
    concurrency: 50,
    databaseUrl: process.env.TASKER_DATABASE_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/tasker',
    amqpUrl: process.env.TASKER_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  };
}
