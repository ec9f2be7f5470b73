#!/usr/bin/env bash
# Builds kubelet, kube-controller-manager and kube-scheduler (the node beside the test control
# plane, see hack/devenv/node/) from the Go module in node/ with one `go build`, into the
# same cache directory as kube-apiserver and etcd (hack/controlplane/build.sh), once.
# About 80 s when the apiserver's build cache is warm, about 7 minutes from an empty one.
# Prints the directory that holds all five binaries.
set -euo pipefail

KUBE_VERSION=v1.35.4
here=$(cd "$(dirname "$0")" && pwd)
BINARIES=(kubelet kube-controller-manager kube-scheduler)

# The apiserver and etcd first (they share most of the build cache): the same directory.
cache=$(bash "$here/build.sh" | tail -n 1)

built() {
  local binary
  for binary in "${BINARIES[@]}"; do [[ -x "$cache/$binary" ]] || return 1; done
}

if built; then
  echo "$cache"
  exit 0
fi

# One build at a time: a second caller waits for the first and reuses it.
exec 9>"$cache/.node-lock"
flock 9
if built; then
  echo "$cache"
  exit 0
fi

# shellcheck source=../lib.sh
source "$here/../lib.sh"
ldflags=$(kube_ldflags "$KUBE_VERSION")

export CGO_ENABLED=0
out=$(mktemp -d "$cache/.node-build.XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "building ${BINARIES[*]} $KUBE_VERSION into $cache (about 80 s with a warm build cache, 7 minutes cold)" >&2
(cd "$here/node" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)
for binary in "${BINARIES[@]}"; do mv "$out/$binary" "$cache/$binary"; done
echo "$cache"
