#!/usr/bin/env bash
# Build the project's local base images offline, so that no image build ever
# pulls from a registry:
#
#   localhost/asya-base/debian-python3:bookworm  Debian bookworm minbase + Debian's python3 on PATH
#   localhost/asya-base/conda-py37:3.7.16        Debian minbase, NO Debian python; the only
#                                                interpreter is /opt/conda/bin/python (3.7),
#                                                a copy of the machine's pyenv 3.7.16 tree
#   localhost/asya-base/busybox:static           FROM scratch + Debian's static busybox
#
# usage: tools/build-base-images.sh [--force] [--fresh] [debian-python3|conda-py37|busybox ...]
#
#   --force   rebuild images that already exist (otherwise they are skipped)
#   --fresh   also rebuild the cached root filesystems (implies --force)
#
# Debian packages come from the mirror this machine's apt already uses (read at
# run time, never hard-coded). Downloaded .debs and finished root filesystems
# are cached under .build/base-images/; a cached root filesystem is used only
# if this script and the mirror are unchanged since it was made, so --force
# takes seconds and --fresh never downloads a package twice.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo_root/.tools/containers.conf}
cache_dir=$repo_root/.build/base-images
debian_suite=bookworm
pyenv_python37=${ASYA_PYENV_PYTHON37:-$HOME/.pyenv/versions/3.7.16}
# podman import starts from an empty config: without PATH, `python3` is not
# found ("executable file not found in $PATH").
standard_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

declare -A image_of=(
    [debian-python3]=localhost/asya-base/debian-python3:bookworm
    [conda-py37]=localhost/asya-base/conda-py37:3.7.16
    [busybox]=localhost/asya-base/busybox:static
)
build_order=(busybox debian-python3 conda-py37)

log() { echo "build-base-images: $*"; }
die() { echo "build-base-images: error: $*" >&2; exit 1; }

force=false
fresh=false
selected=()
for arg in "$@"; do
    case $arg in
        --force) force=true ;;
        --fresh) force=true; fresh=true ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) [[ -n ${image_of[$arg]+set} ]] || die "unknown image '$arg'; known: ${build_order[*]}"
           selected+=("$arg") ;;
    esac
done
[[ ${#selected[@]} -gt 0 ]] || selected=("${build_order[@]}")

[[ $EUID -eq 0 ]] || die "debootstrap and podman's root storage need root; run as root"
[[ -f $CONTAINERS_CONF ]] || die "$CONTAINERS_CONF is missing; run 'make podman' first"
for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || die "$tool is not installed; run 'make podman' first"
done

mkdir -p "$cache_dir"
# Two builds at once (parallel make, two terminals) would fight over the same
# work directories and .deb cache.
exec 9>"$cache_dir/.lock"
flock 9

# The first URI of an apt source that serves $debian_suite's main component,
# from deb822 .sources files or from one-line sources.list files.
read_debian_mirror() {
    local sources_file
    for sources_file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -f $sources_file ]] || continue
        awk -v suite="$debian_suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && comps ~ /(^| )main( |$)/ && uri != "") {
                    print uri; found = 1; exit
                }
                types = suites = comps = uri = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "types:"      { $1 = ""; types = $0 }
            tolower($1) == "uris:"       { uri = $2 }
            tolower($1) == "suites:"     { $1 = ""; suites = $0 }
            tolower($1) == "components:" { $1 = ""; comps = $0 }
            END { if (!found) flush() }
        ' "$sources_file" | head -n1 | grep . && return 0
    done
    for sources_file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $sources_file ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -E 's/\[[^]]*\]//' "$sources_file" |
            awk -v suite="$debian_suite" '$1 == "deb" && $3 == suite { for (i = 4; i <= NF; i++) if ($i == "main") { print $2; exit } }' |
            head -n1 | grep . && return 0
    done
    return 1
}

# A build key: a cached root filesystem is reused only if it was made by this
# very script from the same mirror.
cache_key() {
    { cat "$0"; echo "$debian_mirror"; } | sha256sum | cut -c1-12
}

work_dirs=()
cleanup() {
    local dir mount_point
    for dir in "${work_dirs[@]}"; do
        # debootstrap mounts /proc and /sys inside the target; a failed run can
        # leave them mounted, and rm must never descend into them.
        while read -r mount_point; do
            umount -l "$mount_point" 2>/dev/null || true
        done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
        rm -rf --one-file-system "$dir"
    done
}
trap cleanup EXIT

# Sets work_dir (not echoed: a subshell would lose the cleanup registration).
new_work_dir() {
    work_dir=$cache_dir/work/$1
    rm -rf --one-file-system "$work_dir"
    mkdir -p "$work_dir"
    work_dirs+=("$work_dir")
}

# debootstrap --variant=minbase (dpkg, apt, coreutils, bash: no python) plus
# the given packages, into ROOTFS.
debootstrap_minbase() {
    local rootfs=$1 include=$2 log_file=$cache_dir/logs/$3.debootstrap.log
    mkdir -p "$cache_dir/debs" "$cache_dir/logs"
    # Two stages, so that dpkg can be told to skip its fsync after every file
    # before it installs anything: a throwaway root filesystem needs no crash
    # safety, and the build takes about a third less time.
    if ! debootstrap --foreign --variant=minbase --include="$include" --cache-dir="$cache_dir/debs" \
            "$debian_suite" "$rootfs" "$debian_mirror" >"$log_file" 2>&1; then
        tail -n 20 "$log_file" >&2
        die "debootstrap (first stage) failed (full log: $log_file)"
    fi
    echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/zz-asya-build-unsafe-io"
    if ! chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$log_file" 2>&1; then
        tail -n 20 "$log_file" >&2
        die "debootstrap (second stage) failed (full log: $log_file)"
    fi
    rm -f "$rootfs/etc/dpkg/dpkg.cfg.d/zz-asya-build-unsafe-io"
}

# What a slim image leaves out: docs, man pages, apt lists and caches, logs.
# The dpkg excludes keep images built FROM this one slim as well.
slim_debian_rootfs() {
    local rootfs=$1
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-asya-slim" <<'EOF'
# Written by asya's tools/build-base-images.sh: no docs in this image.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    chroot "$rootfs" apt-get clean
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/usr/share/lintian "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/apt/* \
        "$rootfs"/var/log/bootstrap.log "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/alternatives.log
    # debootstrap copies the host's resolver and hostname; an image has its own.
    rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
}

rootfs_debian_python3() {
    local rootfs=$1
    # python3-minimal alone lacks json; python3 is the whole standard library.
    debootstrap_minbase "$rootfs" python3 debian-python3
    slim_debian_rootfs "$rootfs"
    chroot "$rootfs" python3 -c 'import json, socket, select, signal, logging, importlib, traceback' ||
        die "Debian's python3 in the new root filesystem cannot import its standard library"
}

# Parts of a CPython tree that no model server needs: tests, GUIs, the
# installer of pip, 2to3, headers and the static library.
python37_leave_out=(
    lib/python3.7/test lib/python3.7/idlelib lib/python3.7/tkinter lib/python3.7/turtledemo
    lib/python3.7/turtle.py lib/python3.7/ensurepip lib/python3.7/lib2to3 lib/python3.7/unittest/test
    lib/python3.7/ctypes/test lib/python3.7/distutils/tests lib/python3.7/sqlite3/test
    lib/python3.7/lib-dynload/_tkinter.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_testcapi.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_ctypes_test.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_testbuffer.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_testimportmultiple.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_testmultiphase.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/_xxtestfuzz.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/lib-dynload/nis.cpython-37m-x86_64-linux-gnu.so
    lib/python3.7/config-3.7m-x86_64-linux-gnu/libpython3.7m.a
    include share lib/pkgconfig
)

rootfs_conda_py37() {
    local rootfs=$1 conda=$1/opt/conda
    [[ -x $pyenv_python37/bin/python3.7 ]] ||
        die "no Python 3.7 tree at $pyenv_python37 (set ASYA_PYENV_PYTHON37 to one)"
    # The shared libraries that the 3.7 tree's extension modules link besides
    # libc (ssl/hashlib, sqlite3, curses, readline); zlib, bz2, lzma, uuid and
    # crypt come with minbase.
    debootstrap_minbase "$rootfs" libssl3,libsqlite3-0,libncursesw6,libreadline8 conda-py37
    slim_debian_rootfs "$rootfs"

    mkdir -p "$conda"
    cp -a "$pyenv_python37/." "$conda/"
    local part
    for part in "${python37_leave_out[@]}"; do
        rm -rf "${conda:?}/$part"
    done
    # pip and setuptools: nothing can be installed offline anyway.
    rm -rf "$conda"/lib/python3.7/site-packages/{pip,setuptools,easy_install}*
    # Keep only the interpreter in bin/: the other scripts' #! lines name the
    # pyenv path of the build machine.
    find "$conda/bin" -mindepth 1 -not -name python3.7 -delete
    ln -s python3.7 "$conda/bin/python3"
    ln -s python3.7 "$conda/bin/python"
    # pyenv links bin/python3.7 to libpython with an absolute RUNPATH under
    # $HOME/.pyenv; tell the dynamic loader where the copy lives instead.
    echo /opt/conda/lib >"$rootfs/etc/ld.so.conf.d/opt-conda.conf"
    chroot "$rootfs" ldconfig
    # pyenv compiled three optimisation levels; keep one, made here, so that
    # tracebacks name /opt/conda paths and startup needs no writable tree.
    find "$conda" -name __pycache__ -type d -prune -exec rm -rf {} +
    chroot "$rootfs" /opt/conda/bin/python -m compileall -q /opt/conda/lib/python3.7 >/dev/null ||
        die "compileall with /opt/conda/bin/python failed"
    chmod -R a+rX "$conda"

    chroot "$rootfs" /opt/conda/bin/python -c \
        'import json, socket, select, signal, logging, importlib, traceback, ssl, hashlib, sqlite3, ctypes, zlib, bz2, lzma, uuid' ||
        die "/opt/conda/bin/python cannot import its standard library"
    if chroot "$rootfs" /bin/sh -c "PATH=$standard_path command -v python3 || command -v python"; then
        die "the conda-py37 image must have no python on PATH"
    fi
}

rootfs_busybox() {
    local rootfs=$1 busybox_binary applet_path
    busybox_binary=$(dpkg-query -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1) ||
        die "Debian's busybox-static is not installed; run 'make podman' first"
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
    chmod 1777 "$rootfs/tmp"
    cp "$busybox_binary" "$rootfs/bin/busybox"
    # What `busybox --install -s` would do, done from outside so that the
    # build does not depend on running the binary inside the new root.
    while read -r applet_path; do
        # linuxrc is the initramfs entry point, not a command.
        [[ $applet_path == bin/busybox || $applet_path == linuxrc ]] && continue
        mkdir -p "$rootfs/$(dirname "$applet_path")"
        ln -sf /bin/busybox "$rootfs/$applet_path"
    done < <("$busybox_binary" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}

# podman import options per image (the equivalent of ENV/CMD/LABEL).
import_changes() {
    # No LABEL: labels are inherited, and would mislabel every derived image.
    local changes=(--change "ENV PATH=$standard_path")
    case $1 in
        debian-python3) changes+=(--change 'CMD ["python3"]') ;;
        conda-py37) changes+=(--change 'CMD ["/bin/bash"]') ;;
        busybox) changes+=(--change 'CMD ["sh"]') ;;
    esac
    printf '%s\n' "${changes[@]}"
}

# A quick run of the finished image, the way a pod would use it.
smoke_test() {
    local name=$1 image=${image_of[$1]}
    local run=(podman run --rm --network none "$image")
    case $name in
        busybox)
            [[ "$("${run[@]}" sh -c 'echo hi')" == hi ]] ;;
        debian-python3)
            "${run[@]}" python3 -c 'import json, socket, select, signal, logging, importlib, traceback' ;;
        conda-py37)
            "${run[@]}" /opt/conda/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 7), sys.version' &&
                ! "${run[@]}" sh -c 'command -v python3 || command -v python' ;;
    esac
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# "12.3" seconds since a now_ms reading
seconds_since() { local ms=$(($(now_ms) - $1)); echo "$((ms / 1000)).$((ms % 1000 / 100))"; }

build_image() {
    local name=$1 image=${image_of[$1]} rootfs_tar started_ms phase_ms phases=() size_bytes
    if ! $force && podman image exists "$image"; then
        log "$image exists; skipped (--force rebuilds it)"
        return
    fi
    started_ms=$(now_ms)
    rootfs_tar=$cache_dir/$name-$(cache_key).rootfs.tar
    if $fresh || [[ ! -f $rootfs_tar ]]; then
        log "$image: building the root filesystem"
        new_work_dir "$name"
        mkdir -p "$work_dir/rootfs"
        "rootfs_${name//-/_}" "$work_dir/rootfs"
        rm -f "$cache_dir/$name"-*.rootfs.tar
        tar --numeric-owner -C "$work_dir/rootfs" -cf "$rootfs_tar.tmp" .
        mv "$rootfs_tar.tmp" "$rootfs_tar"
        rm -rf --one-file-system "$work_dir"
        phases+=("root filesystem $(seconds_since "$started_ms") s")
    else
        phases+=("cached root filesystem")
    fi
    phase_ms=$(now_ms)
    local changes
    mapfile -t changes < <(import_changes "$name")
    podman import --quiet "${changes[@]}" "$rootfs_tar" "$image" >/dev/null
    phases+=("import $(seconds_since "$phase_ms") s")
    phase_ms=$(now_ms)
    smoke_test "$name" || die "$image was built but fails its smoke test"
    phases+=("smoke test $(seconds_since "$phase_ms") s")
    size_bytes=$(podman image inspect --format '{{.Size}}' "$image")
    local phase_list
    phase_list=$(printf '%s, ' "${phases[@]}")
    log "$image: built in $(seconds_since "$started_ms") s (${phase_list%, }), $(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB"
}

debian_mirror=$(read_debian_mirror) ||
    die "no apt source for Debian $debian_suite main in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
for name in "${build_order[@]}"; do
    for wanted in "${selected[@]}"; do
        if [[ $wanted == "$name" ]]; then
            build_image "$name"
        fi
    done
done
