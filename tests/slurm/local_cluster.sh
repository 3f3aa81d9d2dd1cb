#!/bin/bash
# A one-node Slurm cluster on this machine, for `make test-slurm`:
#   tests/slurm/local_cluster.sh install   Debian's slurmctld, slurmd, slurm-client and munge (as root, or via sudo)
#   tests/slurm/local_cluster.sh start DIR  a munge key, slurm.conf under DIR, munged, slurmctld and slurmd
#   tests/slurm/local_cluster.sh stop DIR   the daemons started by `start DIR`
# Commands then need SLURM_CONF=DIR/slurm.conf. One node only: Debian's slurmd is built without
# --enable-multiple-slurmd, which two nodes on one host would need.
set -euo pipefail
ACTION=${1:?usage: local_cluster.sh install | start DIR | stop DIR}
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)

case "$ACTION" in
install)
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null; then
    exit 0
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  ;;
start)
  DIR=$(realpath -m "${2:?usage: local_cluster.sh start DIR}")
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  HOST=$(hostname -s)
  CPUS=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS
  MEMORY_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
  cat >"$DIR/slurm.conf" <<CONF
ClusterName=egrsd-local
SlurmctldHost=$HOST
SlurmctldPort=$((6817 + 10))
SlurmdPort=$((6818 + 10))
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mkdir -p /etc/munge
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $SUDO chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    $SUDO chmod 400 /etc/munge/munge.key
  fi
  $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
  $SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  pgrep -x munged >/dev/null || $SUDO -u munge munged 2>/dev/null || $SUDO munged --force
  export SLURM_CONF=$DIR/slurm.conf
  $SUDO env SLURM_CONF="$SLURM_CONF" slurmctld
  $SUDO env SLURM_CONF="$SLURM_CONF" slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then exit 0; fi
    sleep 1
  done
  echo "error: the local Slurm node did not become idle in 60 s — see $DIR/log" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  DIR=$(realpath -m "${2:?usage: local_cluster.sh stop DIR}")
  # Stops slurmctld and every slurmd of this cluster.
  SLURM_CONF=$DIR/slurm.conf scontrol shutdown >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: local_cluster.sh install | start DIR | stop DIR" >&2
  exit 2
  ;;
esac
