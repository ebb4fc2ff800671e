# Copies the runtime, its launcher (__main__.py) and its bytecode (__pycache__)
# into the directory the model container mounts read-only and runs as
# `<python> /opt/asya`. Runs under busybox sh as a non-root user on a read-only
# root filesystem: it writes only into the target directory (an emptyDir in the pod).
set -eu

target_dir="${1:-/opt/asya}"
source_dir=/asya

# Copy then rename: the model container never sees a half-written file, even if
# this init container is restarted while the pod's volume survives. The .pyc
# files go first and the runtime last; a .pyc that does not match the source
# next to it is never used anyway (it is checked against the source's hash).
install_file() {
    name="${1##*/}"
    partial="$2/.$name.partial"
    /bin/busybox cp "$1" "$partial"
    /bin/busybox chmod 0644 "$partial"
    /bin/busybox mv -f "$partial" "$2/$name"
}

/bin/busybox mkdir -p "$target_dir/__pycache__"
/bin/busybox chmod 0755 "$target_dir/__pycache__"
versions=""
for pyc in "$source_dir"/__pycache__/*.pyc; do
    [ -e "$pyc" ] || continue
    install_file "$pyc" "$target_dir/__pycache__"
    case "${pyc##*/}" in
        asya_runtime.cpython-3*.pyc)
            tag="${pyc##*/asya_runtime.cpython-3}"
            versions="$versions 3.${tag%.pyc}"
            ;;
    esac
done
install_file "$source_dir/__main__.py" "$target_dir"
install_file "$source_dir/asya_runtime.py" "$target_dir"

# "3.10 3.7 3.8" -> "3.7 3.8 3.10", as a reader expects them.
versions="$(for version in $versions; do echo "$version"; done | /bin/busybox sort -t . -k 2 -n | /bin/busybox tr '\n' ' ')"
versions="${versions% }"
checksum="$(/bin/busybox sha256sum "$target_dir/asya_runtime.py")"
echo "asya-runtime-init: copied asya_runtime.py and __main__.py to $target_dir (sha256 ${checksum%% *}); bytecode for Python ${versions:-none}"
