import { Context } from '@temporalio/activity';

/** How often a kept-alive activity heartbeats: well inside the heartbeat timeouts workflows set. */
export const KEEPALIVE_MS = 5_000;

type ActivityFn = (...args: never[]) => Promise<unknown>;

/**
 * Makes activities that do not heartbeat themselves heartbeat every KEEPALIVE_MS while they run.
 *
 * A worker killed mid-activity is only noticed by Temporal when the activity's heartbeat timeout
 * passes; without one, when its start-to-close timeout does (an hour for a stage's activities).
 * Scheduled with a heartbeat timeout and wrapped here, such an activity is retried on another
 * worker within that timeout. Not for activities that heartbeat a resume cursor themselves
 * (`executeRequests`): a detail-less heartbeat would replace their cursor.
 */
export function keepAlive<T extends Record<string, ActivityFn>>(activities: T): T {
  const wrapped: Record<string, ActivityFn> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      const ctx = Context.current();
      const timer = setInterval(() => ctx.heartbeat(), KEEPALIVE_MS);
      try {
        return await fn(...args);
      } finally {
        clearInterval(timer);
      }
    };
  }
  return wrapped as T;
}
