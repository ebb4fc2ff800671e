#!/usr/bin/env bash
# Builds KEDA's operator from its Go module, for the e2e autoscaling scenario.
#
#   tools/keda/build.sh          # build into .tools/keda/<version>/ unless already there
#                                # (<version>: tools/keda/VERSION, read by the e2e too)
#   tools/keda/build.sh --print  # print the folder the operator and CRDs land in
#
# KEDA's go.mod carries a replace directive, so `go install ...@version` is refused;
# a throw-away wrapper module requires KEDA, repeats that one replace and imports
# cmd/operator, and `go build` builds it from there. The CRDs ship inside the module
# (config/crd/bases) and are copied next to the binary (crds/), so the e2e applies
# exactly the CRDs of the operator it runs.
#
# Environment: ASYA_KEDA_DIR (default .tools/keda/<version>), GOFLAGS/GOPATH as usual.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
keda_version=$(tr -d '[:space:]' <"$here/VERSION")
# KEDA's go.mod replaces this module (a replace applies only in the main module, so
# the wrapper repeats it); change it with the version.
nexus_replace='github.com/nexus-rpc/nexus-proto-annotations v0.1.0 => github.com/nexus-rpc/nexus-proto-annotations v0.1.1-0.20260629224316-835bd8d49cb4'
go_version=1.26.0

repo_root=$(cd "$here/../.." && pwd)
out_dir=${ASYA_KEDA_DIR:-$repo_root/.tools/keda/$keda_version}

if [[ ${1:-} == --print ]]; then
    echo "$out_dir"
    exit 0
fi

log() { echo "keda: $*"; }

if [[ -x $out_dir/bin/keda && -f $out_dir/crds/.complete ]]; then
    log "$keda_version already built in $out_dir"
    exit 0
fi

command -v go >/dev/null || { echo "keda: error: go is not installed (KEDA $keda_version needs Go $go_version)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/asya-keda-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat >"$work/go.mod" <<GOMOD
module asya.local/keda-build

go $go_version

require github.com/kedacore/keda/v2 $keda_version

replace $nexus_replace
GOMOD
cat >"$work/main.go" <<'GOMAIN'
// Package main only pins KEDA's operator into this module's build list.
package main

import _ "github.com/kedacore/keda/v2/cmd/operator"

func main() {}
GOMAIN

start=$(date +%s)
log "resolving modules for KEDA $keda_version"
(cd "$work" && go mod tidy)
mkdir -p "$out_dir/bin" "$out_dir/crds"
if [[ ! -x $out_dir/bin/keda ]]; then
    log "building the operator (cold: 8 to 30 minutes on 2 cores, 3.5 GB peak)"
    (cd "$work" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$keda_version" \
        -o "$out_dir/bin/keda.tmp" github.com/kedacore/keda/v2/cmd/operator)
    mv "$out_dir/bin/keda.tmp" "$out_dir/bin/keda"
fi
# Every CRD the operator watches (keda.sh and eventing.keda.sh): a controller
# whose kind the cluster lacks stops the operator's manager.
module_dir=$(cd "$work" && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)
cp "$module_dir"/config/crd/bases/*.yaml "$out_dir/crds/"
chmod u+w "$out_dir"/crds/*.yaml
touch "$out_dir/crds/.complete"
log "built $out_dir/bin/keda and its CRDs in $(( $(date +%s) - start )) s"
