#!/usr/bin/env bash
# Build the five Kubernetes binaries the local cluster runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl) from the Go module
# proxy, at the version pinned in tools/kubernetes/VERSION.
#
#   tools/kubernetes/build.sh ROOT     # writes ROOT/<version>/bin/<binary>
#
# Skipped when the five binaries are present. k8s.io/kubernetes' go.mod points
# its staging modules at ./staging/... paths, so `go install ...@version` is
# refused; a small wrapper module requires k8s.io/kubernetes and replaces each
# staging module by its published v0.X.Y release instead.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 ROOT   (writes ROOT/<version>/bin)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
version=$(tr -d '[:space:]' <"$here/VERSION")
# Staging modules are published as v0.<minor>.<patch> of the same release.
staging_version="v0.${version#v1.}"
root=$1
mkdir -p "$root"
root=$(cd "$root" && pwd)
bin_dir=$root/$version/bin
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

all_present=true
for binary in "${binaries[@]}"; do
    [[ -x "$bin_dir/$binary" ]] || all_present=false
done
if $all_present; then
    exit 0
fi

command -v go >/dev/null || { echo "kubernetes/build.sh: go is missing (Go 1.26 or newer is needed)" >&2; exit 1; }

module_dir=$root/$version/module
rm -rf "$module_dir"
mkdir -p "$module_dir"
cd "$module_dir"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

started=$(date +%s)
echo "kubernetes/build.sh: building Kubernetes $version (a cold build takes about 10 min on 2 cores)"
upstream_go_mod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f "$upstream_go_mod" ]] || { echo "kubernetes/build.sh: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }
staging_modules=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$upstream_go_mod")
[[ -n "$staging_modules" ]] || { echo "kubernetes/build.sh: no staging replaces in $upstream_go_mod" >&2; exit 1; }

{
    echo "module asya.local/kubernetes-build"
    echo
    echo "go $(sed -n 's/^go \(.*\)/\1/p' "$upstream_go_mod")"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    for module in $staging_modules; do
        echo "	$module => $module $staging_version"
    done
    echo ")"
} >go.mod
# Main packages cannot be imported by compiled code; a file behind a build tag
# that is never set still makes `go mod tidy` keep their dependencies.
{
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for binary in "${binaries[@]}"; do
        echo "	_ \"k8s.io/kubernetes/cmd/$binary\""
    done
    echo ")"
} >tools.go
go mod tidy

packages=()
for binary in "${binaries[@]}"; do
    packages+=("k8s.io/kubernetes/cmd/$binary")
done
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitVersion=$version"
rm -rf "$bin_dir.tmp"
mkdir -p "$bin_dir.tmp"
go build -trimpath -ldflags "$ldflags" -o "$bin_dir.tmp/" "${packages[@]}"
rm -rf "$bin_dir"
mv "$bin_dir.tmp" "$bin_dir"
echo "kubernetes/build.sh: built ${binaries[*]} into $bin_dir in $(( $(date +%s) - started )) s"
