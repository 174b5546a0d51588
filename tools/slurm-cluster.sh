#!/usr/bin/env bash
# Single-node Slurm for local testing of the Snakemake Slurm profile (workflow/profiles/slurm).
#
#   tools/slurm-cluster.sh install   # Debian packages slurmctld slurmd slurm-client munge (only if missing)
#   tools/slurm-cluster.sh start     # write /etc/slurm/slurm.conf, start munged + slurmctld + slurmd, wait for idle
#   tools/slurm-cluster.sh status    # sinfo + squeue
#   tools/slurm-cluster.sh stop      # cancel jobs, TERM then KILL the daemons by their recorded PIDs
#
# Runs as root, without systemd or cgroups (proctrack/linuxproc, task/none, no accounting).
# Daemons run in the foreground (-D/-F) in their own session, detached from the caller; their PIDs
# and logs live in the run directory (GLACIERMAP_SLURM_RUN_DIR, default /tmp/glaciermap-slurm).
# Every blocking step is bounded with `timeout -k`. See docs/slurm.md.
set -euo pipefail

RUN_DIR="${GLACIERMAP_SLURM_RUN_DIR:-/tmp/glaciermap-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
CLUSTER_NAME="${GLACIERMAP_SLURM_CLUSTER:-glaciermap}"
PARTITION="${GLACIERMAP_SLURM_PARTITION:-main}"
START_TIMEOUT="${GLACIERMAP_SLURM_START_TIMEOUT:-60}" # seconds to wait for the node to become idle
STOP_TIMEOUT="${GLACIERMAP_SLURM_STOP_TIMEOUT:-15}"   # seconds between TERM and KILL
MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_KEY=/etc/munge/munge.key
DAEMONS=(munged slurmctld slurmd) # start order; stop goes in reverse
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf 'slurm-cluster: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
# bounded: run a command with a wall-clock bound (seconds) and a KILL 5 s after the TERM.
bounded() {
	local secs=$1
	shift
	timeout -k 5 "$secs" "$@"
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (daemons, /etc/slurm, /var/spool)"; }

pid_of() { # recorded PID of a daemon, empty if none
	local f="$RUN_DIR/$1.pid"
	[[ -s $f ]] && cat "$f" || true
}

running() { # PID exists and is not a zombie (a killed daemon stays one until PID 1 reaps it)
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null &&
		[[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

alive() { # daemon's recorded PID is running and has the expected command name
	local pid
	pid=$(pid_of "$1")
	running "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

node_name() { hostname -s; }

node_state() { # state of our node as sinfo reports it, empty if the controller does not answer
	bounded 10 sinfo -h -N -n "$(node_name)" -o '%T' 2>/dev/null | head -n1 || true
}

cluster_up() {
	local d
	for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
	[[ $(node_state) =~ ^(idle|mixed|allocated|completing) ]]
}

cmd_install() {
	need_root
	local missing=() c pkgs=("${PACKAGES[@]}")
	for c in slurmctld slurmd sbatch squeue sinfo munged; do
		command -v "$c" >/dev/null || missing+=("$c")
	done
	# stop/status use ps and pgrep (procps), which minimal Debian images lack
	if ! command -v ps >/dev/null || ! command -v pgrep >/dev/null; then
		missing+=(ps/pgrep)
		pkgs+=(procps)
	fi
	if ((${#missing[@]} == 0)); then
		log "packages already installed ($(slurmctld -V 2>/dev/null || echo slurm))"
		return 0
	fi
	log "missing: ${missing[*]}; installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-cache show slurmctld >/dev/null 2>&1; then
		log "apt lists lack slurmctld: apt-get update"
		bounded 300 apt-get update -q
	fi
	bounded 600 apt-get install -y -q --no-install-recommends "${pkgs[@]}"
	log "installed $(slurmctld -V)"
}

# Hardware as slurmd sees it (CPUs, sockets, cores, threads), so the node is not drained for a
# mismatch; RealMemory a bit (10 %) below the memory available now, so slurmd never reports less.
node_line() {
	local name hw cpus mem_avail_mb real_mb
	name=$(node_name)
	hw=$(bounded 20 slurmd -C | head -n1) || die "slurmd -C failed"
	cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
	[[ -n $cpus ]] || cpus=$(nproc)
	mem_avail_mb=$(awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo)
	real_mb=$((mem_avail_mb * 9 / 10))
	local topo
	topo=$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$hw" || true)
	# No Gres= here: this machine has no GPU (see docs/slurm.md for a GPU node line).
	echo "NodeName=$name NodeAddr=127.0.0.1 CPUs=$cpus $topo RealMemory=$real_mb State=UNKNOWN"
}

write_conf() {
	mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd "$RUN_DIR"
	local node
	node=$(node_line)
	local tmp="$CONF.tmp.$$"
	cat >"$tmp" <<EOF
# Written by tools/slurm-cluster.sh start ($(date -u +%FT%TZ)); rewritten on every cold start.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$(node_name)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# No systemd, no cgroups: track job processes by parent PID, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No slurmdbd: sacct has no data, so Snakemake must poll with squeue (slurm-status-command: squeue)
# and finished jobs must stay visible to squeue long enough (MinJobAge >= 3 x first status check).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.daemon.pid
SlurmdPidFile=$RUN_DIR/slurmd.daemon.pid
SlurmctldLogFile=$RUN_DIR/slurmctld.log
SlurmdLogFile=$RUN_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$node
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
	mv "$tmp" "$CONF"
	log "wrote $CONF: $node"
}

ensure_munge_key() {
	if [[ -s $MUNGE_KEY ]]; then return 0; fi
	log "creating munge key $MUNGE_KEY"
	mkdir -p "$(dirname "$MUNGE_KEY")"
	if command -v mungekey >/dev/null; then
		bounded 20 mungekey --create --keyfile="$MUNGE_KEY"
	else
		bounded 20 dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
	fi
	chown munge:munge "$MUNGE_KEY" 2>/dev/null || true
	chmod 0400 "$MUNGE_KEY"
}

# spawn NAME CMD...: start a foreground daemon in its own session, detached from our stdio,
# and record its PID (setsid from a non-leader execs in place, so $! is the daemon itself).
spawn() {
	local name=$1
	shift
	setsid "$@" </dev/null >>"$RUN_DIR/$name.out" 2>&1 &
	echo $! >"$RUN_DIR/$name.pid"
	log "started $name (pid $!)"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
	log "$what after $((SECONDS - deadline + secs)) s"
}

munge_ok() { bounded 5 munge -n </dev/null 2>/dev/null | bounded 5 unmunge >/dev/null 2>&1; }
ctld_ok() { bounded 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_idle() {
	local s
	s=$(node_state)
	case "$s" in
	idle* | mixed* | allocated* | completing*) return 0 ;;
	down* | drain* | fail*)
		# e.g. state recovered from a previous unclean stop: bring it back once it registered
		bounded 5 scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 || true
		return 1
		;;
	*) return 1 ;;
	esac
}

fail_start() {
	log "ERROR: $1; last log lines:"
	local f
	for f in "$RUN_DIR"/munged.out "$RUN_DIR"/slurmctld.log "$RUN_DIR"/slurmctld.out "$RUN_DIR"/slurmd.log "$RUN_DIR"/slurmd.out; do
		[[ -s $f ]] && {
			echo "== $f" >&2
			tail -n 15 "$f" >&2
		}
	done
	exit 1
}

cmd_start() {
	need_root
	local c
	for c in slurmctld slurmd munged sinfo; do
		command -v "$c" >/dev/null || die "$c not found: run '$0 install' first"
	done
	if cluster_up; then
		log "already running (munged $(pid_of munged), slurmctld $(pid_of slurmctld), slurmd $(pid_of slurmd)); node $(node_name) $(node_state)"
		return 0
	fi
	local t0=$SECONDS d
	for d in "${DAEMONS[@]}"; do
		if alive "$d"; then
			log "partial cluster found ($d running): stopping it first"
			cmd_stop
			break
		fi
	done
	mkdir -p "$RUN_DIR"
	write_conf
	ensure_munge_key

	mkdir -p /run/munge /var/lib/munge /var/log/munge
	chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
	# Debian runs munged as the munge user (it owns the key and /run/munge); setpriv execs in place,
	# so the recorded PID is munged's own. Without a munge user, run as root (--force).
	if id munge >/dev/null 2>&1; then
		spawn munged setpriv --reuid=munge --regid=munge --init-groups \
			/usr/sbin/munged -F --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET"
	else
		spawn munged /usr/sbin/munged -F --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET"
	fi
	wait_for 15 "munged answers" munge_ok || fail_start "munged did not come up within 15 s"

	spawn slurmctld "$(command -v slurmctld)" -D -i -f "$CONF"
	wait_for 30 "slurmctld answers" ctld_ok || fail_start "slurmctld did not answer 'scontrol ping' within 30 s"

	spawn slurmd "$(command -v slurmd)" -D -f "$CONF" -N "$(node_name)"
	wait_for "$START_TIMEOUT" "node $(node_name) idle" node_idle ||
		fail_start "node $(node_name) not idle within $START_TIMEOUT s (state: '$(node_state)')"
	log "cluster up in $((SECONDS - t0)) s; logs and PIDs in $RUN_DIR"
	bounded 10 sinfo
}

# session_members SID: live (non-zombie) processes of a session
session_members() {
	ps -eo pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ {print $1}' | tr '\n' ' '
}

# stop_pid NAME: TERM the recorded PID (and its session), KILL after STOP_TIMEOUT s; silent if
# not running. A recorded PID now used by another program (stale file) is left alone.
stop_pid() {
	local name=$1 pid
	pid=$(pid_of "$name")
	rm -f "$RUN_DIR/$name.pid"
	[[ -n $pid ]] || return 0
	if ! running "$pid"; then
		log "$name (pid $pid) not running"
		return 0
	fi
	if [[ $(cat "/proc/$pid/comm" 2>/dev/null) != "$name" ]]; then
		log "$name: stale pid $pid now belongs to '$(cat "/proc/$pid/comm" 2>/dev/null)': not touching it"
		return 0
	fi
	# The daemon leads its own session (spawn used setsid): signal the whole session, which also
	# covers its helpers (slurmctld's slurmscriptd).
	local members
	members=$(session_members "$pid")
	log "stopping $name (pid $pid; session: ${members:-$pid})"
	# shellcheck disable=SC2086
	kill -TERM $pid $members 2>/dev/null || true
	local deadline=$((SECONDS + STOP_TIMEOUT))
	while { running "$pid" || [[ -n $(session_members "$pid") ]]; } && ((SECONDS < deadline)); do
		sleep 0.2
	done
	members=$(session_members "$pid")
	if running "$pid" || [[ -n ${members// /} ]]; then
		log "$name still running after $STOP_TIMEOUT s: KILL ${members:-$pid}"
		# shellcheck disable=SC2086
		kill -KILL $pid $members 2>/dev/null || true
	fi
	# give PID 1 a moment to reap the zombie, so `pgrep slurm` right after stop is clean
	deadline=$((SECONDS + 3))
	while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
}

cmd_stop() {
	need_root
	if alive slurmctld; then
		# let slurmd clean up running jobs before it goes away
		bounded 10 scancel --full --partition="$PARTITION" 2>/dev/null || true
		local deadline=$((SECONDS + 10))
		while [[ -n $(bounded 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null || true) ]] &&
			((SECONDS < deadline)); do sleep 0.5; done
	fi
	local i
	for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_pid "${DAEMONS[i]}"; done
	rm -f "$RUN_DIR"/*.daemon.pid
	# Job step daemons live in the job's own session, not slurmd's; scancel above ends them. One that
	# survived (a job ignoring SIGTERM/SIGKILL, e.g. stuck in D state) is reported, not hunted by name.
	local left
	left=$(pgrep -x slurmstepd | tr '\n' ' ' || true)
	[[ -z $left ]] || log "WARNING: slurmstepd still running (pids: $left); kill them by pid if they do not exit"
	log "stopped"
}

cmd_status() {
	local d pid
	for d in "${DAEMONS[@]}"; do
		pid=$(pid_of "$d")
		if alive "$d"; then echo "$d: running (pid $pid)"; else echo "$d: not running${pid:+ (stale pid $pid)}"; fi
	done
	if ! alive slurmctld; then
		echo "cluster: down"
		return 3
	fi
	echo "== sinfo"
	bounded 10 sinfo -N -l || true
	echo "== squeue"
	bounded 10 squeue -l || true
}

usage() {
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	cmd_stop
	cmd_start
	;;
-h | --help | help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
