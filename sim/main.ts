/**
 * `judgeflow sim [--port N] [--host H] [--config file]`: runs the OpenAI-compatible simulator
 * until SIGINT/SIGTERM. Without --config it serves the default models (judge, judge-first, policy,
 * negatives, captioner, reasoner, grader) with the VL-RewardBench truth file of this checkout.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, EXIT, UsageError } from '../cli/errors.js';
import { loadSimConfig, parseSimConfig, SimConfigError, type SimConfig } from './config.js';
import { startSimulator } from './server.js';
import { TruthFileError } from './truth.js';

export const SIM_USAGE = `usage: judgeflow sim [--port N] [--host H] [--config file.yaml|file.json]
  --port    port to listen on (default 8100; 0 = any free port)
  --host    interface to bind (default 127.0.0.1)
  --config  simulator config (see sim/README.md); default: the built-in models`;

interface SimArgs {
  port: number;
  host: string;
  config: string | undefined;
  help: boolean;
}

export function parseSimArgs(argv: string[]): SimArgs {
  const args: SimArgs = { port: 8100, host: '127.0.0.1', config: undefined, help: false };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.indexOf('=');
    const flag = raw.startsWith('--') && eq > 0 ? raw.slice(0, eq) : raw;
    const value = () => {
      const v = raw.startsWith('--') && eq > 0 ? raw.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value\n${SIM_USAGE}`);
      return v;
    };
    switch (flag) {
      case '--port': {
        const v = value();
        const port = Number(v);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be an integer in 0..65535, got ${v}`);
        args.port = port;
        break;
      }
      case '--host':
        args.host = value();
        break;
      case '--config':
        args.config = value();
        break;
      case '-h':
      case '--help':
        args.help = true;
        break;
      default:
        throw new UsageError(`unknown argument ${raw}\n${SIM_USAGE}`);
    }
  }
  return args;
}

/** The config used without --config: default models, truth from this checkout when present. */
export function defaultSimConfig(): SimConfig {
  const truth = fileURLToPath(new URL('../data/vl-rewardbench/data.jsonl', import.meta.url));
  return parseSimConfig(existsSync(truth) ? { truth } : {}, '(default config)');
}

function describe(cfg: SimConfig): string[] {
  return Object.entries(cfg.models).map(([id, m]) => {
    const extra =
      m.behaviour === 'judge' || m.behaviour === 'reasoner'
        ? `accuracy ${m.accuracy}, first_bias ${m.first_bias}, ${m.answer_format} answers`
        : m.behaviour === 'policy'
          ? `quality ${m.quality}`
          : m.behaviour === 'negatives'
            ? `identical_rate ${m.identical_rate}, empty_rate ${m.empty_rate}`
            : '';
    return `  ${id.padEnd(16)} ${m.behaviour}${extra ? ` (${extra})` : ''}`;
  });
}

/**
 * Runs the simulator until SIGINT/SIGTERM; resolves with the exit code once it has shut down.
 * Bad flags throw UsageError; a bad config or truth file throws ConfigError (both exit 2).
 */
export async function simCommand(argv: string[]): Promise<number> {
  const args = parseSimArgs(argv);
  if (args.help) {
    console.log(SIM_USAGE);
    return EXIT.ok;
  }
  let cfg: SimConfig;
  let sim;
  try {
    cfg = args.config ? loadSimConfig(args.config) : defaultSimConfig();
    sim = await startSimulator(cfg, { port: args.port, host: args.host });
  } catch (err) {
    if (err instanceof SimConfigError || err instanceof TruthFileError) throw new ConfigError(err.message, { cause: err });
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new ConfigError(`port ${args.port} on ${args.host} is already in use (choose another with --port)`, { cause: err });
    }
    throw err;
  }
  const truth = cfg.truth === undefined ? 'none' : ([] as string[]).concat(cfg.truth).join(', ');
  // One write, so a parent process reading stdout sees the whole banner at once.
  console.log(
    [
      `judgeflow sim listening on ${sim.url}${cfg.api_key ? ' (API key required)' : ''}`,
      `truth: ${truth}`,
      'models:',
      ...describe(cfg),
      'stats: GET /sim/stats, reset: POST /sim/reset. Ctrl-C stops.',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      const s = sim.stats();
      console.log(`\n${signal}: stopping after ${s.requests} requests (${JSON.stringify(s.byStatus)})`);
      void sim.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return EXIT.ok;
}

// Direct run: `npx tsx sim/main.ts --port 8100`.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  simCommand(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 1;
    },
  );
}
