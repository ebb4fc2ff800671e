#!/usr/bin/env bash
# Build the local cluster's pause image with gcc and podman (no registry, no
# base image): tools/kubernetes/build-pause.sh IMAGE
#
# Skipped when IMAGE exists with the label naming pause.c's sha256.
set -euo pipefail

image=${1:?usage: tools/kubernetes/build-pause.sh IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
source_sum=$(sha256sum "$here/pause/pause.c" | cut -d' ' -f1)
label=org.asya.pause-source
if [[ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" == "$source_sum" ]]; then
    exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
gcc -static -Os -s -Wall -Werror -o "$context/pause" "$here/pause/pause.c"
cp "$here/pause/Containerfile" "$context/Containerfile"
podman build --quiet --network none --label "$label=$source_sum" --tag "$image" "$context" >/dev/null
echo "build-pause: built $image"
