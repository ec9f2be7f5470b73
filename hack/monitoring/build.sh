#!/usr/bin/env bash
# Builds kube-state-metrics and promtool (the fleet view's test loop, README "Fleet view") from
# their Go modules into the cache beside the control plane binaries, once each.
# About 4 minutes for each on 2 cores with a cold build cache.
#
#   bash hack/monitoring/build.sh                     both; prints the two binaries' paths
#   bash hack/monitoring/build.sh kube-state-metrics  one; prints its path
#   bash hack/monitoring/build.sh --where promtool    prints the path, builds nothing
#                                                     (exit 1 when it is not built yet)
#
# GOFLAGS, GOPATH, GOPROXY and the build cache are Go's own (the environment's or `go env`'s).
set -euo pipefail

KSM_MODULE=k8s.io/kube-state-metrics/v2
KSM_VERSION=v2.20.0
PROMTOOL_PACKAGE=github.com/prometheus/prometheus/cmd/promtool
PROMTOOL_VERSION=v0.316.0

cache_root=${CP_MONITORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cp-migration/monitoring}

where_only=0
if [[ "${1:-}" == "--where" ]]; then
  where_only=1
  shift
fi
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(kube-state-metrics promtool)

# The one place each tool's package, version and cache path are spelled.
package_of() {
  case $1 in
    kube-state-metrics) echo "$KSM_MODULE@$KSM_VERSION" ;;
    promtool) echo "$PROMTOOL_PACKAGE@$PROMTOOL_VERSION" ;;
    *) echo "unknown tool: $1 (kube-state-metrics or promtool)" >&2; return 2 ;;
  esac
}
dir_of() {
  case $1 in
    kube-state-metrics) echo "$cache_root/kube-state-metrics-$KSM_VERSION" ;;
    promtool) echo "$cache_root/promtool-$PROMTOOL_VERSION" ;;
  esac
}

build_one() {
  local tool=$1 package dir out
  package=$(package_of "$tool")
  dir=$(dir_of "$tool")
  if [[ -x "$dir/$tool" ]]; then
    echo "$dir/$tool"
    return 0
  fi
  if [[ $where_only -eq 1 ]]; then
    echo "$tool is not built: run \`make monitoring-tools\` (needs Go)" >&2
    return 1
  fi
  if ! command -v go >/dev/null; then
    echo "$tool needs Go to build (go install $package); go is not on PATH" >&2
    return 1
  fi
  mkdir -p "$dir"
  # One build at a time: a second caller waits for the first and reuses it.
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -x "$dir/$tool" ]]; then
    out=$(mktemp -d "$dir/.build.XXXXXX")
    echo "building $package into $dir (about 4 minutes on 2 cores, cold)" >&2
    # go install into a scratch GOBIN, then one rename: a half-written binary is never seen.
    if ! CGO_ENABLED=0 GOBIN="$out" go install -trimpath -ldflags "-s -w" "$package"; then
      rm -rf "$out"
      return 1
    fi
    mv "$out/$tool" "$dir/$tool"
    rm -rf "$out"
  fi
  exec 9>&-
  echo "$dir/$tool"
}

for tool in "${tools[@]}"; do
  build_one "$tool"
done
