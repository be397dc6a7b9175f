/**
 * @tasker/cli: the `tasker` command line (bin `tasker` → src/bin.ts). Exported for
 * embedding and tests: {@link run} runs it on an argv and returns the exit code.
 */
export { run } from './main.ts';
export { buildProgram, DEFAULT_API_URL } from './program.ts';
export { ExitCode, EXIT_CODES_HELP, CliError, describeFailure, type Failure } from './exit-codes.ts';
export { Output, type Streams } from './output.ts';
