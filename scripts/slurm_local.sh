#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slow tests and for trying the SLURM launcher:
#   scripts/slurm_local.sh start DIR   # installs Debian's slurmctld slurmd slurm-client munge if
#                                      # missing (root, apt), starts munged, slurmctld and slurmd
#                                      # with their state, sockets, logs and pids under DIR, and
#                                      # waits until the node takes jobs
#   export SLURM_CONF=DIR/slurm.conf   # what sbatch, squeue, scontrol (and submitit) then read
#   scripts/slurm_local.sh stop DIR    # cancels the jobs, stops the three daemons by their PIDs
# One partition, `debug`, of this node with all its CPUs and memory; no accounting (submitit then
# reads job states with squeue), requeue allowed. Nothing outside DIR is written but the packages.
set -euo pipefail

command=${1:?usage: slurm_local.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm_local.sh start|stop DIR}")
export SLURM_CONF="$dir/slurm.conf"

fail() {
    echo "slurm_local.sh: $*" >&2
    exit 1
}

install() {
    local missing=()
    for tool in slurmctld slurmd sbatch munged; do
        command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" \
            >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || fail "needs root to apt-get install slurmctld slurmd slurm-client munge"
    command -v apt-get >/dev/null || fail "no apt-get: install slurmctld slurmd slurm-client munge"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge \
        >/dev/null || fail "apt-get install slurmctld slurmd slurm-client munge failed"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_conf() {
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=kexue
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    install
    PATH="$PATH:/usr/sbin"
    [ -e "$dir/run/slurmctld.pid" ] && fail "$dir already holds a cluster: stop it first"
    write_conf
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge.key"
    munged --force --key-file="$dir/munge.key" --socket="$dir/run/munge.socket" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/run/munged.seed" || fail "munged did not start ($dir/log/munged.log)"
    slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start ($dir/log/slurmctld.log)"
    slurmd -f "$SLURM_CONF" || fail "slurmd did not start ($dir/log/slurmd.log)"
    for _ in $(seq 1 120); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "SLURM is up: export SLURM_CONF=$SLURM_CONF"
            return
        fi
        sleep 1
    done
    fail "the node did not come up in 120 s: $(sinfo -h -o '%t %E' 2>&1 | head -n 1) " \
        "(logs in $dir/log)"
}

stop() {
    PATH="$PATH:/usr/sbin"
    [ -e "$dir/slurm.conf" ] && scancel --full --quiet "--partition=debug" 2>/dev/null || true
    for daemon in slurmd slurmctld munged; do
        local pidfile="$dir/run/$daemon.pid"
        [ -e "$pidfile" ] || continue
        local pid
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

case "$command" in
start) start ;;
stop) stop ;;
*) fail "unknown command $command: use start or stop" ;;
esac
