import type { Command } from 'commander';
import { HttpTaskClient } from '@tasker/client';
import { EXIT_CODES_LINE, type ExitCode } from './exit-codes.ts';
import { Output, type Streams } from './output.ts';

/** The options every command accepts (declared on the program). */
export interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
}

/** What the commands share: the streams, and the exit code the last action chose. */
export class Runtime {
  exitCode: ExitCode | null = null;
  /** Set once an action starts, so failures are reported in the same mode (--json or not). */
  output: Output | null = null;

  constructor(readonly streams: Streams) {}

  /** The global options as given to this command, its output, and an API client. */
  begin(cmd: Command): { globals: GlobalOptions; out: Output; client: () => HttpTaskClient } {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    const out = new Output(Boolean(globals.json), this.streams);
    this.output = out;
    return {
      globals,
      out,
      client: () => new HttpTaskClient({ baseUrl: globals.url, ...(globals.token ? { token: globals.token } : {}) }),
    };
  }
}

/** Adds the example section (and the exit-code line) to a command's --help. */
export function examples(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n\n${EXIT_CODES_LINE}\n`);
}
