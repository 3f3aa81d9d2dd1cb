#!/usr/bin/env bash
# A throwaway Slurm cluster on this machine, one job submitted to it, then torn down:
#   tests/slurm/run_local_cluster.sh WORKDIR [sbatch options] SCRIPT [script arguments]
# runs `sbatch --wait` with those arguments from the repository root and exits with the job's exit code.
#
# Everything lives in WORKDIR (configuration, state, logs, its own munge key and socket): nothing under /etc is
# touched and no system service is started, so it works in a container without systemd and leaves no daemon behind.
# LOCAL_NODES (default 2) slurmd daemons run side by side, each a node of its own (`slurmd -N name`, its own port),
# each given LOCAL_CPUS_PER_NODE CPUs (default 1). Needs root (the daemons run as root) and Slurm's and munge's
# programs (tests/slurm/install_slurm.sh installs Debian's).
set -euo pipefail
WORK=${1:?usage: tests/slurm/run_local_cluster.sh WORKDIR [sbatch options] SCRIPT [args]}
shift
NODES=${LOCAL_NODES:-2}
CPUS_PER_NODE=${LOCAL_CPUS_PER_NODE:-1}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cd "$(dirname "$0")/../.."
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/munge"
chmod 700 "$WORK/munge"

PIDS=()
stop_cluster() {
  local pid
  # A job still running (this script interrupted) is cancelled first: its processes belong to slurmstepd, which
  # outlives a stopped slurmd.
  if [ -n "${SLURM_CONF:-}" ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    squeue -h -o %i | xargs -r scancel
    for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_cluster EXIT

# Free TCP ports for slurmctld, each slurmd and the job's rendezvous: the emulated nodes share this machine with
# whatever else runs on it (another cluster, another training run on torch's default port 29500).
mapfile -t PORTS < <(python3 - "$((NODES + 2))" <<'PY'
import socket
import sys

sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
for s in sockets:
    print(s.getsockname()[1])
PY
)

# munge: its own key and socket, so a system munged (or its absence) does not matter.
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
SOCKET=$WORK/munge/munge.socket
munged --foreground --force --socket="$SOCKET" --key-file="$WORK/munge/munge.key" \
  --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/munged.seed" --log-file="$WORK/munge/munged.log" \
  --num-threads=2 &>"$WORK/munged.out" &
PIDS+=($!)

HOST=$(hostname -s)
MEMORY_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / NODES ))
{
  echo "ClusterName=egrsd-local"
  echo "SlurmctldHost=$HOST(127.0.0.1)"
  echo "SlurmctldPort=${PORTS[0]}"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "AuthType=auth/munge"
  echo "AuthInfo=socket=$SOCKET"
  echo "CredType=cred/munge"
  echo "StateSaveLocation=$WORK/state"
  echo "SlurmdSpoolDir=$WORK/spool/%n"
  echo "SlurmctldPidFile=$WORK/slurmctld.pid"
  echo "SlurmdPidFile=$WORK/slurmd-%n.pid"
  echo "SlurmctldLogFile=$WORK/slurmctld.log"
  echo "SlurmdLogFile=$WORK/slurmd-%n.log"
  # No cgroups (a container rarely delegates them): processes are tracked by parentage, tasks are not confined.
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "MpiDefault=none"
  echo "ReturnToService=2"
  # The emulated nodes share this machine's CPUs and memory: believe the configuration, not the hardware.
  echo "SlurmdParameters=config_overrides"
  echo "SlurmdTimeout=300"
  for i in $(seq 1 "$NODES"); do
    echo "NodeName=egrsd-n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${PORTS[$i]} CPUs=$CPUS_PER_NODE" \
      "RealMemory=$MEMORY_MB State=UNKNOWN"
  done
  echo "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > "$WORK/slurm.conf"
export SLURM_CONF=$WORK/slurm.conf
export MASTER_PORT=${MASTER_PORT:-${PORTS[$((NODES + 1))]}}  # sbatch passes the environment on to the job

for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" &>"$WORK/slurmctld.out" &
PIDS+=($!)
for i in $(seq 1 "$NODES"); do
  mkdir -p "$WORK/spool/egrsd-n$i"
  slurmd -D -N "egrsd-n$i" -f "$SLURM_CONF" &>"$WORK/slurmd-egrsd-n$i.out" &
  PIDS+=($!)
done

# Wait until every node is idle (slurmd registered with slurmctld).
for attempt in $(seq 120); do
  idle=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
  [ "$idle" -ge "$NODES" ] && break
  if [ "$attempt" -eq 120 ]; then
    echo "the local cluster did not come up within 60 s; sinfo says:" >&2
    sinfo -N >&2 || true
    tail -n 20 "$WORK"/*.log >&2 || true
    exit 1
  fi
  sleep 0.5
done
echo "local Slurm cluster up: $NODES nodes ($(sinfo -h -N -o '%N' | sort -u | tr '\n' ' ')), config $SLURM_CONF"

status=0
# In the background, so that an interrupted run can end it too (stop_cluster): it would wait for the controller.
sbatch --wait "$@" &
PIDS+=($!)
wait "${PIDS[-1]}" || status=$?
echo "job finished with exit code $status"
exit "$status"
