#!/usr/bin/env bash
# Install the RabbitMQ broker (and its Erlang) from Debian's packages.
#
#   tools/install-rabbitmq.sh
#
# Idempotent: nothing is run when rabbitmq-server is already installed. The
# package's own service is never left running: on a machine with systemd or
# sysv-init the postinst may start a broker on 0.0.0.0:5672 with the default
# guest account, so policy-rc.d forbids starting services during the install
# and any broker the package started anyway is stopped. The project's broker
# is started and stopped by tools/rabbitmq.sh, bound to 127.0.0.1 only.
set -euo pipefail

log() { echo "install-rabbitmq: $*"; }

package_is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

if package_is_installed rabbitmq-server; then
    log "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server) already installed"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "install-rabbitmq: rabbitmq-server is missing; run as root: apt-get update && apt-get install -y --no-install-recommends rabbitmq-server" >&2
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

epmd_before=$(pgrep -x epmd || true)
log "installing rabbitmq-server (Debian package, with Erlang)"
export DEBIAN_FRONTEND=noninteractive
# Another job may hold the dpkg lock (make podman in parallel): wait for it.
apt_options=(-q -o DPkg::Lock::Timeout=600)
apt-get "${apt_options[@]}" update >/dev/null
apt-get "${apt_options[@]}" install -y --no-install-recommends rabbitmq-server >/dev/null

# Whatever the package may have started (no policy-rc.d support somewhere):
# stop it, so that nothing listens on 0.0.0.0:5672 once this script is done.
if command -v rabbitmqctl >/dev/null && rabbitmqctl -q status >/dev/null 2>&1; then
    log "stopping the broker the package started"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
fi
# The package's scripts start Erlang's port mapper (epmd -daemon, listening on
# 0.0.0.0:4369) as a side effect; the daemon would outlive the install. Stop
# the ones this install started, by PID.
for pid in $(pgrep -x epmd || true); do
    if ! grep -qx "$pid" <<<"$epmd_before"; then
        log "stopping epmd (PID $pid) started by the package's scripts"
        kill "$pid" 2>/dev/null || true
    fi
done
log "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server) installed"
