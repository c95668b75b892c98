/**
 * Where a command's output goes and what it knows of its terminal. A command run by `judgeflow`
 * itself writes to this process (processIo); a `run` handed to a worker's resident launcher
 * (runtime/launcher.ts) writes to the client's socket, which prints it in the user's terminal.
 */
export interface Io {
  /** A line (or lines) for standard output; a newline is added. */
  out(text: string): void;
  /** A line (or lines) for standard error; a newline is added. */
  err(text: string): void;
  /** Raw text for standard error (terminal redraws). */
  errRaw(text: string): void;
  /** Whether standard error is a terminal (progress is redrawn in place there, logged otherwise). */
  readonly errTTY: boolean;
  /** The environment of the user's command (the variables a command reads besides the servers'). */
  readonly env: NodeJS.ProcessEnv;
  /** The working directory of the user's command (relative spec and dataset paths). */
  readonly cwd: string;
  /** Calls `fn` on Ctrl-C; returns the function that stops listening. */
  onInterrupt(fn: () => void): () => void;
}

export const processIo: Io = {
  // console's, as before there was an Io (and as tests that spy on console read it).
  out: (text) => console.log(text),
  err: (text) => console.error(text),
  errRaw: (text) => void process.stderr.write(text),
  get errTTY() {
    return Boolean(process.stderr.isTTY);
  },
  get env() {
    return process.env;
  },
  get cwd() {
    return process.cwd();
  },
  onInterrupt(fn) {
    process.on('SIGINT', fn);
    return () => process.off('SIGINT', fn);
  },
};
