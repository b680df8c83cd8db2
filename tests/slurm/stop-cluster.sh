#!/usr/bin/env bash
# Stop what tests/slurm/start-cluster.sh STATE_DIR started, by the PIDs it recorded.
set -u
state=$(realpath -m "$1")
for daemon in slurmd slurmctld munged; do
  pidfile="$state/$daemon.pid"
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$pidfile"
done
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$state/slurm.conf" ]; then
  rm -f /etc/slurm/slurm.conf
fi
exit 0
