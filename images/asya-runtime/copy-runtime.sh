# Copies the runtime into the directory the model container mounts read-only
# and runs as `<python> /opt/asya/asya_runtime.py`. Runs under busybox sh as a
# non-root user on a read-only root filesystem: it writes only into the target
# directory (an emptyDir in the pod).
set -eu

target_dir="${1:-/opt/asya}"
partial="$target_dir/.asya_runtime.py.partial"

# Copy then rename: the model container never sees a half-written file, even if
# this init container is restarted while the pod's volume survives.
/bin/busybox cp /asya/asya_runtime.py "$partial"
/bin/busybox chmod 0644 "$partial"
/bin/busybox mv -f "$partial" "$target_dir/asya_runtime.py"

checksum="$(/bin/busybox sha256sum "$target_dir/asya_runtime.py")"
echo "asya-runtime-init: copied asya_runtime.py to $target_dir (sha256 ${checksum%% *})"
