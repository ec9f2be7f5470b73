#!/usr/bin/env bash
# Installs what the test node (hack/devenv/node/) runs on, from Debian: containerd 1.6
# (with ctr), runc, the CNI plugins (bridge, host-local) and a static busybox for the pause and
# stand-in operator images. Idempotent; needs root (CI runs it from .ci/run). Nothing is
# started or enabled here: the node fixture runs containerd itself, with its own config and
# state directories.
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables)

source "$(dirname "$0")/../lib.sh"

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..." >&2
    as_root apt-get update -qq
    # policy-rc.d: on machines with an init system, do not start the packaged containerd
    # service (the node runs its own containerd; a second one would hold /run/containerd).
    policy=/usr/sbin/policy-rc.d
    added_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        added_policy=1
    fi
    status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || status=$?
    [ -z "$added_policy" ] || as_root rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
fi

for tool in containerd ctr runc busybox /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
    command -v "$tool" >/dev/null || { echo "missing after install: $tool" >&2; exit 1; }
done
echo "node packages ready: containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -n 1)" >&2
