#!/usr/bin/env bash
# Install a server the tests run (RabbitMQ, a container registry) from
# Debian's packages, without leaving the package's own service running.
#
#   tools/install-debian-server.sh PACKAGE DAEMON...
#   tools/install-debian-server.sh rabbitmq-server beam.smp epmd
#   tools/install-debian-server.sh docker-registry docker-registry
#
# Idempotent: nothing is run when PACKAGE is already installed. On a machine
# with systemd or sysv-init a postinst may start the server on 0.0.0.0 with
# default credentials, so policy-rc.d forbids starting services during the
# install, and any process named DAEMON that the install started anyway (by
# PID: ones running before are left alone) is stopped. The tests start their
# own instances on 127.0.0.1 (tools/rabbitmq.sh, tests/kit's Registry).
set -euo pipefail

package=${1:?usage: tools/install-debian-server.sh PACKAGE DAEMON...}
shift
daemons=("$@")

log() { echo "install-debian-server: $*"; }

package_is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

daemon_pids() {
    local name
    for name in "${daemons[@]}"; do
        pgrep -x "$name" || true
    done
}

if package_is_installed "$package"; then
    log "$package $(dpkg-query -W -f='${Version}' "$package") already installed"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "install-debian-server: $package is missing; run as root: apt-get update && apt-get install -y --no-install-recommends $package" >&2
    exit 1
fi

# exit 101 = "action forbidden": invoke-rc.d then starts nothing.
policy=/usr/sbin/policy-rc.d
policy_was_ours=false
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    policy_was_ours=true
fi
cleanup() { if $policy_was_ours; then rm -f "$policy"; fi; }
trap cleanup EXIT

running_before=$(daemon_pids)
log "installing $package (Debian package)"
export DEBIAN_FRONTEND=noninteractive
# Another job may hold the dpkg lock (make podman in parallel): wait for it.
apt_options=(-q -o DPkg::Lock::Timeout=600)
apt-get "${apt_options[@]}" update >/dev/null
apt-get "${apt_options[@]}" install -y --no-install-recommends "$package" >/dev/null

# Whatever the package's scripts started regardless (RabbitMQ's also start
# Erlang's port mapper, epmd, on 0.0.0.0:4369): stop it, by PID.
for pid in $(daemon_pids); do
    if ! grep -qx "$pid" <<<"$running_before"; then
        log "stopping $(cat "/proc/$pid/comm" 2>/dev/null || echo process) (PID $pid) started by the install"
        kill "$pid" 2>/dev/null || true
    fi
done
log "$package $(dpkg-query -W -f='${Version}' "$package") installed"
