/** Links into the Temporal Web UI: a run is workflow `<run>`, its stage `<run>/<stage>`. */
import type { RuntimeConfig } from '../runtime/config.js';

/**
 * The Web UI's base URL: `TEMPORAL_UI_URL` when set; the embedded dev server's UI when judgeflow
 * runs the stack; otherwise the dev server's default port on TEMPORAL_ADDRESS's host.
 */
export function temporalUiBase(cfg: Pick<RuntimeConfig, 'temporalAddress' | 'temporalUiPort'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.TEMPORAL_UI_URL) return env.TEMPORAL_UI_URL.replace(/\/+$/, '');
  if (!cfg.temporalAddress) return cfg.temporalUiPort > 0 ? `http://127.0.0.1:${cfg.temporalUiPort}` : undefined;
  const host = cfg.temporalAddress.replace(/^\w+:\/\//, '').replace(/:\d+$/, '');
  return `http://${host}:8233`;
}

export function workflowUrl(base: string, namespace: string, workflowId: string): string {
  return `${base}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
