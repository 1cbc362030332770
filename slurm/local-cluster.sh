#!/usr/bin/env bash
# A real SLURM on this one machine, from Debian's packages (slurm-wlm 22.05 on Debian 12): munge, MariaDB + slurmdbd so
# that `sacct` works, slurmctld, and two or more slurmd compute nodes (n1, n2, ...) that all run on this host.
# It lets anyone (and CI) try aiperf's cluster path without a cluster.
#
# Usage: slurm/local-cluster.sh {install|start|stop|status}
#   install  install the Debian packages (as root; `apt-get update` only when the package lists lack them)
#   start    write /etc/slurm/slurm.conf + slurmdbd.conf, start every daemon that is not running yet, and wait until
#            every node is idle and sacct answers; when everything already runs it changes nothing and says so
#   stop     cancel the cluster's jobs, then stop exactly the daemons that `start` started, by their pid files
#   status   one line per daemon and the nodes; exit status 0 when everything runs, 3 otherwise
#
# Environment:
#   AIPERF_SLURM_STATE   the one folder for state, spool, logs, pid files and the database (default /tmp/aiperf-slurm);
#                        an absolute path without whitespace
#   AIPERF_SLURM_NODES   number of compute nodes, at least 2 (default 2)
#   AIPERF_SLURM_CPUS    CPUs each node declares (default 2, so two 1-CPU tasks fit on a node)
#   AIPERF_SLURM_MEM_MB  memory each node declares, in MB (default 4096)
#
# Why it looks like this (measured on Debian 12): the config lives at /etc/slurm so every client and submitit find it
# without variables; SlurmdParameters=config_overrides lets the nodes declare more CPUs than the machine has (else
# they go `inval`); proctrack/linuxproc + task/none need no cgroups; batch_sched_delay=0 starts the first job at once.
# Several daemons run the same binary, and PID 1 may reap late, so a daemon counts as running only when the pid in its
# pid file is a live, non-zombie process of the expected name; nothing is ever stopped by name.
set -euo pipefail

STATE=${AIPERF_SLURM_STATE:-/tmp/aiperf-slurm}
NNODES=${AIPERF_SLURM_NODES:-2}
CPUS=${AIPERF_SLURM_CPUS:-2}
MEM_MB=${AIPERF_SLURM_MEM_MB:-4096}

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
MARKER="# Written by aiperf's slurm/local-cluster.sh; it is rewritten on every start."
CLUSTER=aiperf
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
CTLD_PORT=6817
DBD_PORT=6819

RUN=$STATE/run
LOG=$STATE/log
DB_DIR=$STATE/mariadb
DB_SOCK=$RUN/mariadb.sock
MUNGE_PID=$RUN/munged.pid

say() { printf 'local-cluster: %s\n' "$*"; }
die() {
    printf 'local-cluster: error: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

node_names() {
    local i
    for ((i = 1; i <= NNODES; i++)); do printf 'n%d\n' "$i"; done
}

# proc_alive PID NAME: true when PID is a live, non-zombie process whose command is NAME (PID 1 may reap late, so
# kill -0 would count a zombie as alive; the name guards against a reused pid).
proc_alive() {
    local pid=$1 name=$2 state comm
    state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}

# pid_of PIDFILE NAME: print the pid in PIDFILE when that process is alive and named NAME.
pid_of() {
    local pidfile=$1 name=$2 pid
    pid=$({ tr -dc '0-9' <"$pidfile"; } 2>/dev/null) || return 1
    [[ -n $pid ]] || return 1
    proc_alive "$pid" "$name" || return 1
    printf '%s\n' "$pid"
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds or SECONDS have passed.
wait_for() {
    local deadline
    deadline=$(awk -v n="$(now)" -v s="$1" 'BEGIN { printf "%.2f", n + s }')
    shift
    until "$@" >/dev/null 2>&1; do
        if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then return 1; fi
        sleep 0.1
    done
}

# log_tail FILE: the last lines of a daemon's log on stdout, so that stderr's first line stays the error itself.
log_tail() { if [[ -r $1 ]]; then tail -n 5 "$1" | sed 's/^/    /'; fi; }

# Daemons in start order: label, pid file, process name.
daemons() {
    printf '%s %s %s\n' munged "$MUNGE_PID" munged
    printf '%s %s %s\n' mariadb "$RUN/mariadb.pid" mariadbd
    printf '%s %s %s\n' slurmdbd "$RUN/slurmdbd.pid" slurmdbd
    printf '%s %s %s\n' slurmctld "$RUN/slurmctld.pid" slurmctld
    local n
    for n in $(node_names); do printf '%s %s %s\n' "slurmd-$n" "$RUN/slurmd-$n.pid" slurmd; done
}

check_settings() {
    [[ $NNODES =~ ^[0-9]+$ && $NNODES -ge 2 && $NNODES -le 99 ]] || die "AIPERF_SLURM_NODES must be 2..99, got '$NNODES'"
    [[ $CPUS =~ ^[0-9]+$ && $CPUS -ge 1 ]] || die "AIPERF_SLURM_CPUS must be a positive integer, got '$CPUS'"
    [[ $MEM_MB =~ ^[0-9]+$ && $MEM_MB -ge 256 ]] || die "AIPERF_SLURM_MEM_MB must be at least 256, got '$MEM_MB'"
    [[ $STATE == /* ]] || die "AIPERF_SLURM_STATE must be an absolute path, got '$STATE'"
    # The path goes into slurm.conf and into the whitespace-separated daemon table that status and stop read.
    [[ $STATE != *[[:space:]]* ]] || die "AIPERF_SLURM_STATE must not contain whitespace, got '${STATE//$'\n'/\\n}'"
}

need_root() { [[ $EUID -eq 0 ]] || die "$1 needs root (daemons run as root and the config goes to /etc/slurm): use sudo"; }

# ---------------------------------------------------------------------------------------------------------- install
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || printf '%s\n' "$p"
    done
}

cmd_install() {
    need_root install
    command -v apt-get >/dev/null || die "install needs apt-get (Debian/Ubuntu); elsewhere install ${PACKAGES[*]} yourself"
    local t0 missing policy_made=0
    t0=$(now)
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "install: all packages already installed (${PACKAGES[*]})"
        return 0
    fi
    local updated=0
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        say "install: apt-get update (the package lists lack ${missing[*]})"
        apt-get update -qq || die "apt-get update failed"
        updated=1
    fi
    # Packages must not start their own system daemons (a MariaDB on port 3306, a munged from an init script): this
    # script starts its own. A policy-rc.d that says 101 is Debian's way to forbid that during the install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    # The install log lives with the rest of the cluster's state (one folder to inspect or delete).
    local install_log=$LOG/install.log
    mkdir -p "$LOG"
    say "install: apt-get install ${missing[*]} (log: $install_log)"
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >"$install_log" 2>&1 || rc=$?
    if ((rc != 0 && !updated)); then
        # Old package lists name versions the mirror no longer has: refresh them once and try again.
        say "install: apt-get install failed; apt-get update and one more try"
        rc=0
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >"$install_log" 2>&1 || rc=$?
    fi
    ((policy_made)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || {
        tail -n 20 "$install_log"
        die "apt-get install failed (full log: $install_log)"
    }
    say "install: done in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------------------------------------------------- config
slurm_conf() {
    local host=$1 n i=0
    cat <<EOF
$MARKER
# A local test cluster: every node is a slurmd on this host, told apart by its port and \$SLURMD_NODENAME.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
KillWait=5
ReturnToService=2
MinJobAge=300
InactiveLimit=0
EOF
    for n in $(node_names); do
        i=$((i + 1))
        printf 'NodeName=%s NodeHostname=%s NodeAddr=127.0.0.1 Port=%d CPUs=%d RealMemory=%d State=UNKNOWN\n' \
            "$n" "$host" $((17000 + i)) "$CPUS" "$MEM_MB"
    done
    printf 'PartitionName=debug Nodes=n[1-%d] Default=YES MaxTime=INFINITE State=UP\n' "$NNODES"
}

slurmdbd_conf() {
    cat <<EOF
$MARKER
AuthType=auth/munge
DbdHost=$1
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
}

# write_conf PATH MODE TEXT: write TEXT to PATH unless it already holds exactly that; refuse to overwrite a file that
# this script did not write (a real cluster's config).
write_conf() {
    local path=$1 mode=$2 text=$3
    if [[ -e $path ]] && ! grep -qxF "$MARKER" "$path"; then
        die "$path exists and was not written by this script; move it away to use the local cluster"
    fi
    if [[ -e $path ]] && [[ "$(cat "$path")" == "$text" ]]; then return 0; fi
    if any_slurm_running; then
        die "$path would change while SLURM daemons run: run '$0 stop' first"
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$text" >"$path.tmp.$$"
    chmod "$mode" "$path.tmp.$$"
    mv -f "$path.tmp.$$" "$path"
    say "wrote $path"
}

any_slurm_running() {
    local label pidfile name
    while read -r label pidfile name; do
        [[ $label == munged || $label == mariadb ]] && continue
        pid_of "$pidfile" "$name" >/dev/null && return 0
    done < <(daemons)
    return 1
}

all_running() {
    local label pidfile name
    while read -r label pidfile name; do
        if [[ $label == munged ]]; then
            munge_works || return 1
        else
            pid_of "$pidfile" "$name" >/dev/null || return 1
        fi
    done < <(daemons)
}

# ---------------------------------------------------------------------------------------------------------- start
munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local pid
    if munge_works; then
        if pid=$(pid_of "$MUNGE_PID" munged); then
            say "munged: already running (pid $pid)"
        else
            say "munged: already running (not started by this script, so stop leaves it alone)"
        fi
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key >/dev/null || die "mungekey --create failed"
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
        say "munge: created /etc/munge/munge.key"
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid \
        --log-file="/var/log/munge/munged.log" ||
        die "munged did not start (see /var/log/munge/munged.log)"
    wait_for 5 munge_works || die "munged started but 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$MUNGE_PID"
    say "munged: started (pid $(tr -dc '0-9' <"$MUNGE_PID"))"
}

mariadb_ping() { mariadb-admin --no-defaults --socket="$DB_SOCK" --user=root ping; }

start_mariadb() {
    local pid
    if pid=$(pid_of "$RUN/mariadb.pid" mariadbd); then
        say "mariadb: already running (pid $pid)"
        return 0
    fi
    if [[ ! -d $DB_DIR/mysql ]]; then
        rm -rf "$DB_DIR"
        mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
        say "mariadb: created the database in $DB_DIR"
    fi
    # Socket only (--skip-networking); durability traded for speed, since this database only serves tests.
    setsid -f mariadbd --no-defaults --user=root --datadir="$DB_DIR" --socket="$DB_SOCK" --skip-networking \
        --pid-file="$RUN/mariadb.pid" --log-error="$LOG/mariadb.log" --skip-log-bin \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        </dev/null >/dev/null 2>&1
    if ! wait_for 30 mariadb_ping; then
        log_tail "$LOG/mariadb.log"
        die "mariadb did not answer on $DB_SOCK within 30 s (see $LOG/mariadb.log)"
    fi
    say "mariadb: started (pid $(pid_of "$RUN/mariadb.pid" mariadbd || echo '?'), socket $DB_SOCK)"
}

dbd_answers() { sacctmgr --noheader --parsable2 show cluster format=Cluster; }

start_slurmdbd() {
    local pid
    if pid=$(pid_of "$RUN/slurmdbd.pid" slurmdbd); then
        say "slurmdbd: already running (pid $pid)"
    else
        # slurmdbd reaches MariaDB through its socket: MYSQL_UNIX_PORT is the client library's way to name it.
        MYSQL_UNIX_PORT=$DB_SOCK slurmdbd || die "slurmdbd did not start (see $LOG/slurmdbd.log)"
        if ! wait_for 20 dbd_answers; then
            log_tail "$LOG/slurmdbd.log"
            die "slurmdbd did not answer on port $DBD_PORT within 20 s (see $LOG/slurmdbd.log)"
        fi
        say "slurmdbd: started (pid $(pid_of "$RUN/slurmdbd.pid" slurmdbd || echo '?'))"
    fi
    if ! sacctmgr --noheader --parsable2 show cluster format=Cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
        say "slurmdbd: registered cluster $CLUSTER"
    fi
}

ctld_answers() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
    local pid
    if pid=$(pid_of "$RUN/slurmctld.pid" slurmctld); then
        say "slurmctld: already running (pid $pid)"
        return 0
    fi
    slurmctld || die "slurmctld did not start (see $LOG/slurmctld.log)"
    if ! wait_for 20 ctld_answers; then
        log_tail "$LOG/slurmctld.log"
        die "slurmctld did not answer within 20 s (see $LOG/slurmctld.log)"
    fi
    say "slurmctld: started (pid $(pid_of "$RUN/slurmctld.pid" slurmctld || echo '?'))"
}

start_slurmd() {
    local n=$1 pid
    if pid=$(pid_of "$RUN/slurmd-$n.pid" slurmd); then
        say "slurmd $n: already running (pid $pid)"
        return 0
    fi
    mkdir -p "$STATE/spool/slurmd-$n"
    slurmd -N "$n" || die "slurmd -N $n did not start (see $LOG/slurmd-$n.log)"
    wait_for 10 pid_of "$RUN/slurmd-$n.pid" slurmd || {
        log_tail "$LOG/slurmd-$n.log"
        die "slurmd -N $n wrote no pid file within 10 s (see $LOG/slurmd-$n.log)"
    }
    say "slurmd $n: started (pid $(pid_of "$RUN/slurmd-$n.pid" slurmd))"
}

nodes_ready() {
    local states
    states=$(sinfo --noheader -N -o '%N %T' 2>/dev/null) || return 1
    local n
    for n in $(node_names); do
        grep -Eq "^$n (idle|mixed|allocated|completing)\$" <<<"$states" || return 1
    done
}

sacct_answers() { sacct --noheader -X -a -S now-1hours -o JobID; }

cmd_start() {
    check_settings
    need_root start
    local bin
    for bin in munged mungekey mariadbd mariadb-install-db mariadb-admin slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
        command -v "$bin" >/dev/null || die "$bin is missing: run '$0 install' first"
    done
    local t0 host
    t0=$(now)
    host=$(hostname -s)
    if all_running && nodes_ready && sacct_answers >/dev/null 2>&1; then
        say "already running ($NNODES nodes, state in $STATE): nothing to do"
        return 0
    fi
    mkdir -p "$STATE/ctld" "$STATE/spool" "$RUN" "$LOG"
    write_conf "$CONF" 644 "$(slurm_conf "$host")"
    write_conf "$DBD_CONF" 600 "$(slurmdbd_conf "$host")"
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    local n
    for n in $(node_names); do start_slurmd "$n"; done
    if ! wait_for 30 nodes_ready; then
        sinfo -N || true
        die "the nodes did not all become idle within 30 s (see $LOG/slurmd-*.log and $LOG/slurmctld.log)"
    fi
    say "nodes: $(node_names | paste -sd' ') idle"
    wait_for 20 sacct_answers || die "sacct does not answer (see $LOG/slurmdbd.log)"
    say "sacct: answers"
    say "started in $(elapsed "$t0") s (state in $STATE; '$0 stop' stops it)"
}

# ---------------------------------------------------------------------------------------------------------- stop
stop_daemon() {
    local label=$1 pidfile=$2 name=$3 pid i
    if ! pid=$(pid_of "$pidfile" "$name"); then
        rm -f "$pidfile"
        say "$label: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Watch the process, not its pid file: a daemon may remove the file before it has finished shutting down.
    for ((i = 0; i < 150; i++)); do
        proc_alive "$pid" "$name" || break
        sleep 0.1
    done
    if proc_alive "$pid" "$name"; then
        kill -KILL "$pid" 2>/dev/null || true
        say "$label: killed (pid $pid did not stop within 15 s of SIGTERM)"
    else
        say "$label: stopped (pid $pid)"
    fi
    rm -f "$pidfile"
}

no_jobs() { [[ -z $(squeue --noheader -o '%i' 2>/dev/null) ]]; }

cancel_jobs() {
    local jobs
    jobs=$(squeue --noheader -o '%i' 2>/dev/null | paste -sd' ') || return 0
    [[ -n $jobs ]] || return 0
    # shellcheck disable=SC2086  # one word per job id
    scancel $jobs 2>/dev/null || true
    if wait_for 15 no_jobs; then
        say "jobs: cancelled $jobs"
    else
        say "jobs: cancelled $jobs (some still completing after 15 s)"
    fi
}

cmd_stop() {
    check_settings
    need_root stop
    local t0
    t0=$(now)
    if pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null; then cancel_jobs; fi
    local lines i
    mapfile -t lines < <(daemons)
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
        # shellcheck disable=SC2086  # label, pid file, name
        stop_daemon ${lines[i]}
    done
    say "stopped in $(elapsed "$t0") s (state kept in $STATE)"
}

# ---------------------------------------------------------------------------------------------------------- status
cmd_status() {
    check_settings
    local label pidfile name pid ok=1
    while read -r label pidfile name; do
        if pid=$(pid_of "$pidfile" "$name"); then
            say "$label: running (pid $pid)"
        elif [[ $label == munged ]] && munge_works; then
            say "$label: running (not started by this script)"
        else
            say "$label: stopped"
            ok=0
        fi
    done < <(daemons)
    if pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        sinfo --noheader -N -o '%N %T' 2>/dev/null | sed 's/^/local-cluster: node /' || true
    fi
    ((ok)) && return 0 || return 3
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 {install|start|stop|status}" >&2
    exit 2
    ;;
esac
