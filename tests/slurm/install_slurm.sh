#!/usr/bin/env bash
# Slurm and munge from Debian's packages, for `make test-slurm` (tests/slurm/run_local_cluster.sh runs them).
# Does nothing when they are installed. Recommended packages (hdf5, influxdb, rrd... plugins) are left out: a
# one-machine cluster needs the basic plugins only.
set -euo pipefail
PROGRAMS=(munged slurmctld slurmd sbatch srun scontrol sinfo)
missing() { local p; for p in "${PROGRAMS[@]}"; do command -v "$p" >/dev/null || return 0; done; return 1; }
missing || { echo "Slurm and munge are installed: $(slurmd -V)"; exit 0; }
if ! command -v apt-get >/dev/null; then
  echo "error: Slurm is not installed and this system has no apt-get — install slurmctld, slurmd, slurm-client and" \
    "munge with its package manager, then run make test-slurm again" >&2
  exit 2
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: installing Slurm needs root — run make test-slurm as root" >&2; exit 2; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# An apt list older than a day (or none: a fresh container) may name package versions the mirror no longer has.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
  "${SUDO[@]}" apt-get update -qq
fi
# dpkg's progress goes to a log, shown only if the install fails. Debian's scripts do not start the services in a
# container (no init system), and the local cluster does not need them to.
LOG=$(mktemp)
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >"$LOG" 2>&1; then
  cat "$LOG" >&2
  exit 1
fi
rm -f "$LOG"
echo "installed: $(slurmd -V)"
