#!/usr/bin/env bash
# Installs and configures podman the way it works on the project's Debian bookworm machines
# (root, no Docker engine, cgroups v1/hybrid): podman + runc + debootstrap from Debian, runc as
# the runtime (crun fails here on cgroups in hybrid mode and on setrlimit), cgroupfs as the
# cgroup manager, no default ulimits. Idempotent; safe to run on every CI run.
set -euo pipefail

CONF=/etc/containers/containers.conf
MARKER="# managed by cp-migration hack/podman-setup.sh"
PACKAGES=(podman runc debootstrap)

source "$(dirname "$0")/lib.sh"

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..." >&2
    as_root apt-get update -qq
    # With recommends: podman's networking (netavark, CNI plugins) and buildah come from them,
    # and `podman build` runs its RUN steps through that networking.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}" slirp4netns uidmap fuse-overlayfs >/dev/null
fi

desired="$MARKER
[containers]
default_ulimits = []

[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
runtime = \"runc\"
"
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$(printf '%s' "$desired")" ]; then
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        as_root cp "$CONF" "$CONF.before-cp-migration"
        echo "kept the previous $CONF as $CONF.before-cp-migration" >&2
    fi
    as_root mkdir -p "$(dirname "$CONF")"
    printf '%s' "$desired" | as_root tee "$CONF" >/dev/null
    echo "wrote $CONF" >&2
fi

podman --runtime runc info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' >/dev/null
echo "podman $(podman version --format '{{.Client.Version}}') ready (runc, cgroupfs)" >&2
