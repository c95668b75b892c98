#!/usr/bin/env bash
# Configures and starts a single-node Slurm on this machine without systemd: munged (as the munge
# user), slurmctld, slurmd. Idempotent: a running daemon is left alone, and the config is only
# written when it is absent or was written by this script. Needs root and Debian's packages:
#   apt-get install --no-install-recommends slurmctld slurmd slurm-client munge
# The node has all CPUs and the memory less 1 GiB; DefMemPerCPU keeps one job from taking the node.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "start-slurm.sh: run as root" >&2; exit 1; }
for b in munged slurmctld slurmd sinfo; do command -v "$b" >/dev/null || { echo "start-slurm.sh: $b not found; apt-get install --no-install-recommends slurmctld slurmd slurm-client munge" >&2; exit 1; }; done

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
conf=/etc/slurm/slurm.conf
marker="# judgeflow single-node Slurm (scripts/start-slurm.sh)"
if [ ! -f "$conf" ] || grep -qF "$marker" "$conf"; then
  cat >"$conf.tmp" <<CONF
$marker
ClusterName=judgeflow
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
MinJobAge=300
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$conf.tmp" "$conf"
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
  state=$(sinfo --noheader --nodes="$host" --format=%t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc) echo "start-slurm.sh: node $host is $state ($cpus CPUs, ${mem} MB)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "start-slurm.sh: node $host did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
