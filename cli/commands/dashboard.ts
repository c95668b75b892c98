import { serve } from '@hono/node-server';
import { createDashboardApp, isLoopback } from '../../web/dashboard.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { temporalUiBase, workflowUrl } from '../web-ui.js';
import { currentProgress } from './status.js';

const USAGE = `usage: judgeflow dashboard [--port N] [--host H] [--allow-remote]

Serves a local web app over Postgres: experiments, ablation groups, runs with live progress,
stage details with Temporal Web UI links, results, comparisons and plots. Binds 127.0.0.1
(default port 8240). A non-loopback --host is refused unless --allow-remote says you mean it:
the dashboard has no login and shows every run.`;

export async function dashboardCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { port: { type: 'string' }, host: { type: 'string' }, 'allow-remote': { type: 'boolean' } }, USAGE);
  const host = values.host ?? '127.0.0.1';
  const port = values.port === undefined ? 8240 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0-65535, got "${values.port}"`);
  if (!isLoopback(host) && !values['allow-remote']) {
    throw new UsageError(
      `--host ${host} is not a loopback address: the dashboard has no login and shows every run; add --allow-remote to serve it there anyway`,
    );
  }
  const conn = await connect();
  const ui = temporalUiBase(conn.cfg);
  const app = createDashboardApp({
    db: conn.db.db,
    progress: (runId) => currentProgress(conn, runId),
    workflowUrl: ui ? (id) => workflowUrl(ui, conn.cfg.namespace, id) : undefined,
  });
  const server = serve({ fetch: app.fetch, port, hostname: host }, (info) =>
    console.log(`judgeflow dashboard: http://${host.includes(':') ? `[${host}]` : host}:${info.port}/ (Ctrl-C stops it)`),
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  server.close();
  await conn.close();
  return EXIT.ok;
}
