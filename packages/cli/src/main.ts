import { CommanderError } from 'commander';
import { ExitCode, describeFailure, type Failure } from './exit-codes.ts';
import { Output, type Streams } from './output.ts';
import { DEFAULT_API_URL, buildProgram } from './program.ts';
import { Runtime } from './runtime.ts';

/**
 * Runs the CLI on `argv` (as `process.argv`: node, script, args...) and returns the exit
 * code. Failures are reported here, once: on stderr (with the fields at fault and a hint),
 * or with --json as the one JSON document `{"error": {...}, "exit_code": n}` on stdout.
 */
export async function run(
  argv: string[],
  streams: Streams = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const rt = new Runtime(streams);
  const program = buildProgram(rt);
  try {
    await program.parseAsync(argv);
    return rt.exitCode ?? ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander printed the message.
      if (err.exitCode === 0) return ExitCode.OK;
      const json = rt.output?.json ?? argv.includes('--json');
      if (json) {
        new Output(true, streams).document({
          error: { code: 'USAGE', message: err.message.replace(/^error: /, ''), issues: [] },
          exit_code: ExitCode.USAGE,
        });
      }
      return ExitCode.USAGE;
    }
    const url = safeUrl(program.opts<{ url?: string }>().url ?? DEFAULT_API_URL);
    const failure = describeFailure(err, url);
    report(failure, rt.output ?? new Output(argv.includes('--json'), streams), streams);
    if (failure.exitCode === ExitCode.UNAVAILABLE && failure.code === 'INTERNAL' && streams.env['TASKER_DEBUG'] && err instanceof Error) {
      streams.stderr.write(`${err.stack}\n`);
    }
    return failure.exitCode;
  }
}

function report(f: Failure, out: Output, streams: Streams): void {
  if (out.json && !out.hasDocument) {
    out.document({
      error: { code: f.code, message: f.message, issues: f.issues, ...(f.status !== undefined ? { status: f.status } : {}) },
      exit_code: f.exitCode,
    });
    return;
  }
  const where = f.status !== undefined ? `${f.code}, HTTP ${f.status}` : f.code;
  const lines = [`error: ${f.message} (${where})`];
  for (const i of f.issues) lines.push(`  - ${i.path}: ${i.message}`);
  if (f.hint) lines.push(`hint: ${f.hint}`);
  streams.stderr.write(`${lines.join('\n')}\n`);
}

/** The API URL without credentials, for messages. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}
