/**
 * Where the CLI writes. Human-readable text by default; with `--json` exactly one JSON
 * document on stdout (the result, or `{error}` on failure) and nothing else there, so a
 * script can pipe it into `jq`. Diagnostics go to stderr in both modes.
 */
export interface Streams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export class Output {
  /** Whether the JSON document has been written (there is only ever one). */
  private documentWritten = false;

  constructor(
    readonly json: boolean,
    private readonly streams: Streams,
  ) {}

  /** stdout is a terminal (and not --json): progress may be redrawn in place. */
  get interactive(): boolean {
    return !this.json && Boolean(this.streams.stdout.isTTY);
  }

  /** Colors only on a terminal, and never with NO_COLOR set. */
  get color(): boolean {
    return this.interactive && !this.streams.env['NO_COLOR'] && this.streams.env['TERM'] !== 'dumb';
  }

  /** Human output (ignored with --json). */
  line(text = ''): void {
    if (!this.json) this.streams.stdout.write(`${text}\n`);
  }

  /** Raw write to stdout, for progress redraws. */
  raw(text: string): void {
    if (!this.json) this.streams.stdout.write(text);
  }

  /** The single JSON document of --json mode. */
  document(doc: unknown): void {
    if (!this.json || this.documentWritten) return;
    this.documentWritten = true;
    this.streams.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  }

  /** With --json the document; otherwise what `human` prints. */
  result(doc: unknown, human: () => void): void {
    if (this.json) this.document(doc);
    else human();
  }

  /** A diagnostic on stderr (both modes). */
  note(text: string): void {
    this.streams.stderr.write(`${text}\n`);
  }

  get hasDocument(): boolean {
    return this.documentWritten;
  }
}
