#!/usr/bin/env bash
# Build every image of the project with podman, offline: no network inside
# the builds (--network none) and no registry (--pull=never): each Dockerfile's
# `ARG BASE_IMAGE` gets one of the local bases from tools/build-base-images.sh.
#
# usage: tools/build-images.sh [IMAGE ...]   e.g. tools/build-images.sh asya-runtime
#
# With no argument every row of the table below is built. A row whose
# Dockerfile is missing is an error, never a silent skip.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo_root/.tools/containers.conf}
log_dir=$repo_root/.build/images/logs

# image | Dockerfile | build context | BASE_IMAGE      (paths from the repo root)
image_table="
localhost/asya-runtime:dev              | images/asya-runtime/Dockerfile       | .                        | localhost/asya-base/busybox:static
localhost/asya-sidecar-fake:dev         | fake-sidecar/Dockerfile              | .build/fake-sidecar      | localhost/asya-base/debian-python3:bookworm
localhost/asya-e2e-model-debian:dev     | tests/e2e/models/debian/Dockerfile   | tests/e2e/models/debian  | localhost/asya-base/debian-python3:bookworm
localhost/asya-e2e-model-conda37:dev    | tests/e2e/models/conda37/Dockerfile  | tests/e2e/models/conda37 | localhost/asya-base/conda-py37:3.7.16
"

log() { echo "build-images: $*"; }
die() { echo "build-images: error: $*" >&2; exit 1; }

# "localhost/asya-runtime:dev" -> "asya-runtime"
short_name() { local name=${1##*/}; echo "${name%%:*}"; }

rows=()
while read -r row; do
    [[ -n $row ]] && rows+=("$row")
done < <(sed -E 's/[[:space:]]*\|[[:space:]]*/|/g; s/^[[:space:]]+//; s/[[:space:]]+$//' <<<"$image_table")

selected_rows=()
if [[ $# -eq 0 ]]; then
    selected_rows=("${rows[@]}")
else
    for wanted in "$@"; do
        found=false
        for row in "${rows[@]}"; do
            image=${row%%|*}
            if [[ $wanted == "$image" || $wanted == "$(short_name "$image")" ]]; then
                selected_rows+=("$row"); found=true
            fi
        done
        $found || die "unknown image '$wanted'; known: $(for row in "${rows[@]}"; do short_name "${row%%|*}"; done | tr '\n' ' ')"
    done
fi

command -v podman >/dev/null || die "podman is not installed; run 'make podman' first"
[[ -f $CONTAINERS_CONF ]] || die "$CONTAINERS_CONF is missing; run 'make podman' first"

# Check everything before building anything, so a missing file is reported at
# once rather than after minutes of other builds.
problems=()
for row in "${selected_rows[@]}"; do
    IFS='|' read -r image dockerfile context base <<<"$row"
    [[ -f $repo_root/$dockerfile ]] || problems+=("$image: $dockerfile does not exist")
    # Contexts under .build/ are written by prepare_context, just before the build.
    [[ $context == .build/* || -d $repo_root/$context ]] || problems+=("$image: build context $context does not exist")
    podman image exists "$base" || problems+=("$image: base image $base is missing (make base-images)")
done
if [[ ${#problems[@]} -gt 0 ]]; then
    printf 'build-images: error: %s\n' "${problems[@]}" >&2
    exit 1
fi

# Files an image's Dockerfile copies that are generated, not checked in.
prepare_context() {
    case $(short_name "$1") in
        asya-sidecar-fake)
            # The package plus the pinned wheels (sha256-checked), which the
            # offline build unpacks: pika for RabbitMQ, boto3 and its
            # dependencies for SQS.
            local context=$repo_root/.build/fake-sidecar
            rm -rf "$context"
            mkdir -p "$context"
            cp -r "$repo_root/fake-sidecar/asya_sidecar" "$repo_root/fake-sidecar/.dockerignore" "$context/"
            # pip downloads the wheel: the venv's, when PYTHON has no pip (Debian's python3).
            local wheel_python=${PYTHON:-python3}
            if ! "$wheel_python" -m pip --version >/dev/null 2>&1 && [[ -x $repo_root/.venv/bin/python ]]; then
                wheel_python=$repo_root/.venv/bin/python
            fi
            "$wheel_python" "$repo_root/tools/fetch_wheels.py" "$context/wheels" \
                | sed 's/^/build-images: /' \
                || die "tools/fetch_wheels.py failed"
            ;;
    esac
}

mkdir -p "$log_dir"
for row in "${selected_rows[@]}"; do
    IFS='|' read -r image dockerfile context base <<<"$row"
    prepare_context "$image"
    build_log=$log_dir/$(short_name "$image").log
    started_ms=$(($(date +%s%N) / 1000000))
    if ! podman build --network none --pull=never \
            --build-arg "BASE_IMAGE=$base" \
            --file "$repo_root/$dockerfile" --tag "$image" \
            "$repo_root/$context" >"$build_log" 2>&1; then
        tail -n 25 "$build_log" >&2
        die "building $image from $dockerfile failed (full log: $build_log)"
    fi
    elapsed_ms=$(($(date +%s%N) / 1000000 - started_ms))
    size_bytes=$(podman image inspect --format '{{.Size}}' "$image")
    log "$image: built in $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s, $(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB (from $dockerfile on $base)"
done
