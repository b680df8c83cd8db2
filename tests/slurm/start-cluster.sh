#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for tests: munged, slurmctld, slurmd.
#   tests/slurm/start-cluster.sh STATE_DIR
# Installs Debian's slurm-wlm and munge when missing (as root, with apt-get). Writes
# STATE_DIR/slurm.conf; export SLURM_CONF=STATE_DIR/slurm.conf to use the cluster.
# No systemd, no cgroups, no accounting: daemons are started by hand and stopped by
# tests/slurm/stop-cluster.sh STATE_DIR, by the PIDs they recorded.
set -euo pipefail
state=$(realpath -m "$1")
[ "$(id -u)" = 0 ] || { echo "start-cluster: needs root" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "start-cluster: no apt-get to install slurm-wlm" >&2; exit 2; }
  echo "start-cluster: installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p "$state"/{ctld,spool,munge}
host=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

# munge: a key, and the daemon on its own socket under STATE_DIR.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --force --keyfile /etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; fi
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
munged --force --pid-file "$state/munged.pid" --socket /run/munge/munge.socket.2 \
  --log-file "$state/munged.log" --seed-file "$state/munge/munged.seed"

cat > "$state/slurm.conf" <<CONF
ClusterName=poolbench
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 10 minutes (status checks, tests).
MinJobAge=600
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$state/slurm.conf"
# Job steps (srun inside an allocation) read the default path, not SLURM_CONF: point it at
# ours unless the machine has a SLURM config of its own (stop-cluster.sh removes the link).
mkdir -p /etc/slurm
if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
  ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
fi
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if [ "$(sinfo -h -o %t 2>/dev/null)" = "idle" ]; then
    echo "start-cluster: node $host idle ($cpus CPUs, $memory MB); SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "start-cluster: the node did not become idle; see $state/slurmctld.log and $state/slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
