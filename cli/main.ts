/**
 * judgeflow CLI. Exit codes: 0 success, 1 run failed, 2 usage/spec/config error, 3 lost contact
 * with Temporal (a run goes on), 130 stopped following on Ctrl-C (the run goes on).
 */
import { commandErrorExit, EXIT } from './errors.js';
import { processIo } from './io.js';

const HELP = `judgeflow — durable, reproducible experiments for reasoning judges

usage: judgeflow <command> [flags]

  run <name|path>     launch an experiment (attaches if this spec version already runs)
  replay <run> --from <stage>   a new run reusing the stages upstream of <stage>, recomputing the rest
  status <run|group>  stage-by-stage progress (--watch to follow)
  list                runs, newest first (--group G: an ablation group)
  compare <run|run/stage>… | --group G   metrics side by side, paired tests on shared items
  report <run>… | --group G --out F.html  a self-contained HTML report with plots
  dashboard [--port]  a local web app over runs, groups, results and plots
  results <run>       metrics of a run's stages
  artifacts <run>     what a run imported and produced (kind, rows, hash, parents)
  export <run> <stage> --format F --out PATH   write a stage's artifact to a file
  cancel <run|group>  cancel a run or a group's runs
  up / down           start / stop the local stack (embedded Postgres, Temporal dev server, worker)
  worker              run a worker in the foreground (scale out: start several)
  migrate             apply database migrations
  sim                 the OpenAI-compatible simulator (a test and demo instrument, not a model)
  kinds               list the stage kinds a spec can use

Every command takes --help. Configuration comes from the environment: DATABASE_URL,
TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, JUDGEFLOW_TASK_QUEUE, JUDGEFLOW_STATE_DIR.`;

type Command = (argv: string[]) => Promise<number>;

// Each command loads only what it uses, so a quick command (kinds, --help) starts without
// Temporal, pg or openai. The stage kinds are registered before any command runs.

const commands: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./commands/run.js')).runCommand,
  replay: async () => (await import('./commands/replay.js')).replayCommand,
  compare: async () => (await import('./commands/compare.js')).compareCommand,
  report: async () => (await import('./commands/report.js')).reportCommand,
  dashboard: async () => (await import('./commands/dashboard.js')).dashboardCommand,
  status: async () => (await import('./commands/status.js')).statusCommand,
  list: async () => (await import('./commands/list.js')).listCommand,
  results: async () => (await import('./commands/results.js')).resultsCommand,
  cancel: async () => (await import('./commands/cancel.js')).cancelCommand,
  artifacts: async () => (await import('./commands/artifacts.js')).artifactsCommand,
  export: async () => (await import('./commands/export.js')).exportCommand,
  up: async () => (await import('./commands/stack.js')).upCommand,
  down: async () => (await import('./commands/stack.js')).downCommand,
  worker: async () => (await import('./commands/worker.js')).workerCommand,
  migrate: async () => (await import('./commands/migrate.js')).migrateCommand,
  sim: async () => (await import('../sim/main.js')).simCommand,
  kinds: async () => (await import('./commands/kinds.js')).kindsCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP);
    return name ? EXIT.ok : EXIT.usage;
  }
  const load = commands[name];
  if (!load) {
    console.error(`judgeflow: unknown command "${name}"\n\n${HELP}`);
    return EXIT.usage;
  }
  try {
    await import('../spec/builtin.js');
    const cmd = await load();
    if (rest.includes('--help') || rest.includes('-h'))
      return await cmd(['--help']).catch((err: unknown) => {
        console.log((err as Error).message.replace(/^.*\n\n/s, ''));
        return EXIT.ok;
      });
    return await cmd(rest);
  } catch (err) {
    return commandErrorExit(name, err, processIo);
  }
}

// A gRPC call given up while Temporal was away (its result() long poll, abandoned when the CLI
// reconnected or gave up) may retry on its timer after the command closed the connection. Nothing
// waits for that call any more: its "Channel has been shut down" must not crash the exit.
process.on('uncaughtException', (err) => {
  if (err instanceof Error && err.message === 'Channel has been shut down') return;
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(EXIT.runFailed);
});

const code = await main(process.argv.slice(2));
process.exitCode = code;
if (code === EXIT.lostContact) {
  // Temporal is away: the gRPC client may still hold retries of an abandoned call to the dead
  // server, which would fail on the closed channel after this command has said everything.
  process.exit(code);
}
