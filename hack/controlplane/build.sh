#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules (nothing can be fetched
# from release sites here) into a cache outside the repository, once.
# Prints the directory that holds both binaries.
#
# KUBEBUILDER_ASSETS, when set and holding both binaries, is used as is
# (the envtest convention), so users with setup-envtest skip the build.
set -euo pipefail

KUBE_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
here=$(cd "$(dirname "$0")" && pwd)

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache=${CP_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cp-migration/controlplane/$KUBE_VERSION-etcd$ETCD_VERSION}
mkdir -p "$cache"
if [[ -x "$cache/kube-apiserver" && -x "$cache/etcd" ]]; then
  echo "$cache"
  exit 0
fi

# One build at a time: a second caller waits for the first and reuses it.
exec 9>"$cache/.lock"
flock 9
if [[ -x "$cache/kube-apiserver" && -x "$cache/etcd" ]]; then
  echo "$cache"
  exit 0
fi

# shellcheck source=../lib.sh
source "$here/../lib.sh"
ldflags=$(kube_ldflags "$KUBE_VERSION")

export CGO_ENABLED=0
echo "building etcd $ETCD_VERSION into $cache" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$cache/etcd.tmp" .)
mv "$cache/etcd.tmp" "$cache/etcd"

echo "building kube-apiserver $KUBE_VERSION into $cache (about 5 minutes on 2 cores)" >&2
(cd "$here/kube-apiserver" && go build -trimpath -ldflags "$ldflags" -o "$cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
echo "$cache"
