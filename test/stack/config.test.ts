import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRuntimeConfig, redactUrl, RuntimeConfigError } from '../../runtime/config.js';

describe('loadRuntimeConfig', () => {
  it('defaults: a state dir under cwd, the embedded services on fixed ports', () => {
    expect(loadRuntimeConfig({})).toEqual({
      stateDir: resolve('.judgeflow'),
      namespace: 'default',
      taskQueue: 'judgeflow',
      pgPort: 54329,
      temporalPort: 7239,
      temporalUiPort: 8239,
    });
  });

  it('reads every variable; empty strings count as unset', () => {
    const cfg = loadRuntimeConfig({
      JUDGEFLOW_STATE_DIR: '/srv/jf',
      DATABASE_URL: 'postgresql://u:p@db:5432/x',
      TEMPORAL_ADDRESS: 'temporal.internal:7233',
      TEMPORAL_NAMESPACE: 'research',
      JUDGEFLOW_TASK_QUEUE: 'judges-2',
      JUDGEFLOW_PG_PORT: '6000',
      JUDGEFLOW_TEMPORAL_PORT: '',
      JUDGEFLOW_TEMPORAL_UI_PORT: '0',
      TEMPORAL_CLI_PATH: '/opt/temporal',
    });
    expect(cfg).toEqual({
      stateDir: '/srv/jf',
      databaseUrl: 'postgresql://u:p@db:5432/x',
      temporalAddress: 'temporal.internal:7233',
      namespace: 'research',
      taskQueue: 'judges-2',
      pgPort: 6000,
      temporalPort: 7239,
      temporalUiPort: 0,
      temporalCliPath: '/opt/temporal',
    });
  });

  it('overrides win over the environment', () => {
    expect(loadRuntimeConfig({ JUDGEFLOW_PG_PORT: '6000' }, { pgPort: 6001 }).pgPort).toBe(6001);
  });

  it.each([
    ['JUDGEFLOW_PG_PORT', 'abc', 'JUDGEFLOW_PG_PORT="abc" is invalid: expected a number; set it to a free TCP port or unset it to use 54329'],
    ['JUDGEFLOW_TEMPORAL_PORT', '70000', 'JUDGEFLOW_TEMPORAL_PORT="70000" is invalid: expected 1–65535; set it to a free TCP port or unset it to use 7239'],
    ['JUDGEFLOW_TEMPORAL_UI_PORT', '1.5', 'JUDGEFLOW_TEMPORAL_UI_PORT="1.5" is invalid: expected a whole number'],
    ['JUDGEFLOW_PG_PORT', '0', 'JUDGEFLOW_PG_PORT="0" is invalid: expected 1–65535'],
    ['TEMPORAL_ADDRESS', 'http://x:7233', 'TEMPORAL_ADDRESS="http://x:7233" is invalid: expected host:port'],
    ['JUDGEFLOW_TASK_QUEUE', 'has space', 'JUDGEFLOW_TASK_QUEUE="has space" is invalid'],
    ['DATABASE_URL', 'mysql://u:secret@h/x', 'DATABASE_URL=mysql://u:***@h/x is invalid: expected postgres://'],
  ])('%s=%s → an error naming the variable and the fix', (variable, value, message) => {
    let caught: unknown;
    try {
      loadRuntimeConfig({ [variable]: value });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RuntimeConfigError);
    expect((caught as RuntimeConfigError).variable).toBe(variable);
    expect((caught as Error).message).toContain(message);
    expect((caught as Error).message).not.toContain('secret');
  });

  it('redactUrl masks only the password', () => {
    expect(redactUrl('postgres://u:pa%40ss@h:5/db')).toBe('postgres://u:***@h:5/db');
    expect(redactUrl('postgres://u@h/db')).toBe('postgres://u@h/db');
    expect(redactUrl('not a url with secret')).toBe('<unparseable URL>');
  });
});
