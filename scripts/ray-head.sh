#!/usr/bin/env bash
# A local Ray head for the `ray` training backend: `scripts/ray-head.sh start|stop|restart`.
# Port 6390 (6379 is often a machine's Redis); the Jobs REST API answers on the dashboard,
# http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265}. `start` is idempotent. Needs `ray[default]` (requirements.txt).
set -euo pipefail
port=${RAY_HEAD_PORT:-6390}
dash=${RAY_DASHBOARD_PORT:-8265}
ray=${RAY_BIN:-$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/ray}
[ -x "$ray" ] || ray=$(command -v ray) || { echo "ray-head.sh: ray not found; pip install -r requirements.txt" >&2; exit 1; }
up() { python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$dash/api/version', timeout=2)" 2>/dev/null; }
start() {
  if up; then echo "ray-head.sh: Ray already answers on :$dash"; return; fi
  "$ray" start --head --port="$port" --dashboard-host=127.0.0.1 --dashboard-port="$dash" --disable-usage-stats --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" >/dev/null
  for _ in $(seq 1 120); do up && { echo "ray-head.sh: Ray head on :$port, Jobs API on :$dash"; return; }; sleep 1; done
  echo "ray-head.sh: the Jobs API did not answer on :$dash" >&2; exit 1
}
case "${1:-start}" in
  start) start ;;
  stop) "$ray" stop --force >/dev/null 2>&1 || true ;;
  restart) "$ray" stop --force >/dev/null 2>&1 || true; start ;;
  *) echo "usage: ray-head.sh start|stop|restart" >&2; exit 2 ;;
esac
