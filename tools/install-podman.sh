#!/usr/bin/env bash
# Install podman and the tools the image builds need, from Debian's packages,
# and write the containers.conf that makes podman work on this kind of machine.
#
#   tools/install-podman.sh DIR      # writes DIR/containers.conf
#
# Idempotent: packages already installed are not touched, and apt is not run
# at all when nothing is missing. The Makefile exports CONTAINERS_CONF=DIR/containers.conf
# so that every podman call of the project reads the file written here.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR   (writes DIR/containers.conf)" >&2
    exit 2
fi
conf_dir=$1

# debootstrap and busybox-static are here because tools/build-base-images.sh
# builds the base images from them; catatonit is the init podman uses for the
# infra container of every pod that `podman kube play` creates.
required_packages=(podman runc buildah skopeo catatonit conmon debootstrap busybox-static)
# A rootless podman maps users through newuidmap/newgidmap.
if [[ $EUID -ne 0 ]]; then
    required_packages+=(uidmap)
fi

package_is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

missing_packages=()
for package in "${required_packages[@]}"; do
    package_is_installed "$package" || missing_packages+=("$package")
done

if [[ ${#missing_packages[@]} -gt 0 ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "install-podman: missing Debian packages: ${missing_packages[*]}; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
        exit 1
    fi
    echo "install-podman: installing ${missing_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing_packages[@]}" >/dev/null
fi

mkdir -p "$conf_dir"
conf_file=$(cd "$conf_dir" && pwd)/containers.conf
# Written to a temporary file and renamed, so a podman started meanwhile by a
# parallel job never reads half a file.
cat >"$conf_file.tmp" <<'EOF'
# Written by tools/install-podman.sh; regenerated on every `make podman`.
[containers]
# The default ulimits podman asks for exceed the hard limits of these
# machines: without these lines every container fails in runc with
# "error setting rlimit type 7: operation not permitted".
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# No network namespace with interfaces, ever: containers of this project talk
# over Unix sockets on shared volumes. Without this line a plain `podman run`
# creates the CNI bridge cni-podman0 (10.88.0.0/16) and iptables chains.
netns = "none"

[engine]
runtime = "runc"
# No systemd runs as PID 1 here, so podman must manage cgroups itself and
# write its events to a file instead of the journal.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv -f "$conf_file.tmp" "$conf_file"

if ! CONTAINERS_CONF=$conf_file podman info >/dev/null 2>"$conf_file.info-errors"; then
    echo "install-podman: 'podman info' failed with $conf_file:" >&2
    cat "$conf_file.info-errors" >&2
    exit 1
fi
rm -f "$conf_file.info-errors"
echo "install-podman: $(podman --version), runtime $(CONTAINERS_CONF=$conf_file podman info --format '{{.Host.OCIRuntime.Name}}, storage {{.Store.GraphDriverName}} in {{.Store.GraphRoot}}'); CONTAINERS_CONF=$conf_file"
