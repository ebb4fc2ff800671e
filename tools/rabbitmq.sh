#!/usr/bin/env bash
# The project's own RabbitMQ broker for tests: loopback only, all state under
# one directory, stopped without leaving anything running.
#
#   tools/rabbitmq.sh start    # start (or find running) and wait until AMQP answers
#   tools/rabbitmq.sh stop     # stop the broker and its epmd; a no-op when stopped
#   tools/rabbitmq.sh status   # exit 0 when it runs
#   tools/rabbitmq.sh url      # print the AMQP URL
#   tools/rabbitmq.sh management-url   # print the management API's URL
#
# Environment: ASYA_RABBITMQ_DIR (default .tools/rabbitmq), ASYA_RABBITMQ_PORT
# (AMQP, default 35672; the Erlang distribution uses PORT+1, epmd PORT+2 and
# the management HTTP API PORT+3).
#
# Everything listens on 127.0.0.1 only, on ports that are not RabbitMQ's
# defaults (so a system broker or epmd on 5672/4369 neither clashes nor gets
# used): the AMQP listener (rabbitmq.conf), the node's distribution listener
# (inet_dist_use_interface, fixed port), epmd (ERL_EPMD_ADDRESS, own port) and
# the CLI's short-lived nodes. Mnesia, logs, the cookie, the PID file and the
# config all live in ASYA_RABBITMQ_DIR: nothing is written to /var/lib/rabbitmq
# or /etc/rabbitmq, and the package's service is not used. One plugin is
# enabled: rabbitmq_management (shipped with Debian's package), whose HTTP API
# the chart's topology Job (charts/asya-actor/files/topology.py) uses, as it
# would on a production broker; start waits until it answers too.
#
# Installed by tools/install-debian-server.sh (Debian's rabbitmq-server).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
state_dir=${ASYA_RABBITMQ_DIR:-$repo_root/.tools/rabbitmq}
amqp_port=${ASYA_RABBITMQ_PORT:-35672}
dist_port=$((amqp_port + 1))
epmd_port=$((amqp_port + 2))
management_port=$((amqp_port + 3))
node_name=asya-test@localhost
start_timeout=${ASYA_RABBITMQ_START_TIMEOUT:-120}

log() { echo "rabbitmq: $*"; }
die() { echo "rabbitmq: error: $*" >&2; exit 1; }

sbin=/usr/lib/rabbitmq/bin
[[ -x $sbin/rabbitmq-server ]] || die "rabbitmq-server is not installed; run make rabbitmq"

mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
pid_file=$state_dir/rabbitmq.pid
log_dir=$state_dir/log

# Every rabbitmq-* script and every Erlang VM below reads these.
export HOME=$state_dir                       # .erlang.cookie lives here
export RABBITMQ_CONF_ENV_FILE=$state_dir/rabbitmq-env.conf
export RABBITMQ_CONFIG_FILE=$state_dir/rabbitmq.conf
export RABBITMQ_ADVANCED_CONFIG_FILE=$state_dir/advanced.config
export RABBITMQ_ENABLED_PLUGINS_FILE=$state_dir/enabled_plugins
export RABBITMQ_MNESIA_BASE=$state_dir/mnesia
export RABBITMQ_LOG_BASE=$log_dir
export RABBITMQ_PID_FILE=$pid_file
export RABBITMQ_NODENAME=$node_name
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$amqp_port
export RABBITMQ_DIST_PORT=$dist_port
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=$epmd_port
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

write_config() {
    cat >"$RABBITMQ_CONF_ENV_FILE" <<EOF
# Written by tools/rabbitmq.sh; the variables are exported by it as well.
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$amqp_port
DIST_PORT=$dist_port
EOF
    cat >"$RABBITMQ_CONFIG_FILE" <<EOF
# Written by tools/rabbitmq.sh: a test broker on the loopback only.
listeners.tcp.1 = 127.0.0.1:$amqp_port
listeners.ssl = none
# guest may log in only from the loopback (RabbitMQ's default, kept explicit).
loopback_users.guest = true
# Tests fill the disk with nothing; the default 50 MB floor is kept.
log.file.level = info
log.console = false
management.tcp.ip = 127.0.0.1
management.tcp.port = $management_port
EOF
    cat >"$RABBITMQ_ADVANCED_CONFIG_FILE" <<'EOF'
%% Written by tools/rabbitmq.sh: the node's distribution listener on the loopback.
[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].
EOF
    echo '[rabbitmq_management].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    if [[ ! -s $HOME/.erlang.cookie ]]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie")
    fi
    chmod 0400 "$HOME/.erlang.cookie"
    mkdir -p "$RABBITMQ_MNESIA_BASE" "$log_dir"
}

running_pid() {
    [[ -s $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A recycled PID is not ours: ours is an Erlang VM whose home is our state dir.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-home $state_dir " || return 1
    echo "$pid"
}

amqp_answers() {
    # A TCP connect that gets AMQP's greeting back for a protocol header.
    python3 - "$amqp_port" <<'EOF'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        sys.exit(0 if s.recv(8) else 1)
except OSError:
    sys.exit(1)
EOF
}

management_answers() {
    # The API's overview as guest (allowed from the loopback only).
    python3 - "$management_port" <<'EOF'
import base64, sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/overview",
                                 headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
try:
    with urllib.request.urlopen(request, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
}

epmd_stop() {
    # Our epmd (own port) holds no name once the node is gone; -kill ends it.
    epmd -port "$epmd_port" -kill >/dev/null 2>&1 || true
}

start() {
    if pid=$(running_pid) && amqp_answers && management_answers; then
        log "already running (PID $pid) on amqp://127.0.0.1:$amqp_port"
        return 0
    fi
    write_config
    rm -f "$pid_file"
    log "starting $node_name on 127.0.0.1:$amqp_port (state in $state_dir)"
    # setsid: the broker must not die with the shell of the make target that
    # started it, and `stop` must be able to find it later by its PID file.
    setsid "$sbin/rabbitmq-server" >"$log_dir/startup.log" 2>&1 </dev/null &
    local deadline=$((SECONDS + start_timeout))
    until amqp_answers && management_answers; do
        if ((SECONDS >= deadline)); then
            tail -n 40 "$log_dir/startup.log" >&2 || true
            stop || true
            die "no AMQP and management answer on 127.0.0.1:$amqp_port and :$management_port after ${start_timeout}s (log: $log_dir)"
        fi
        if ! kill -0 $! 2>/dev/null && ! running_pid >/dev/null; then
            tail -n 40 "$log_dir/startup.log" >&2 || true
            epmd_stop
            die "rabbitmq-server exited during start-up (log: $log_dir)"
        fi
        sleep 0.2
    done
    log "ready: amqp://guest:guest@127.0.0.1:$amqp_port/, management http://127.0.0.1:$management_port (PID $(running_pid || echo '?'), $((SECONDS)) s)"
}

stop() {
    local pid
    if pid=$(running_pid); then
        log "stopping PID $pid"
        "$sbin/rabbitmqctl" -q stop "$pid_file" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 60))
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                log "PID $pid did not stop in 60 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.2
        done
    fi
    epmd_stop
    rm -f "$pid_file"
}

case ${1:-} in
    start) start ;;
    stop) stop; log "stopped" ;;
    status) pid=$(running_pid) && amqp_answers && log "running (PID $pid) on 127.0.0.1:$amqp_port" ;;
    url) echo "amqp://guest:guest@127.0.0.1:$amqp_port/" ;;
    management-url) echo "http://127.0.0.1:$management_port" ;;
    *) echo "usage: $0 start|stop|status|url|management-url" >&2; exit 2 ;;
esac
