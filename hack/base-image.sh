#!/usr/bin/env bash
# Makes a local base image for the container builds when no registry can be reached: Debian
# bookworm (debootstrap minbase) plus Debian's python3 and python3-venv, imported with podman.
#
#   hack/base-image.sh [IMAGE]      # prints the image name on its last stdout line
#
# Cached: nothing is done when the image already exists. DEBIAN_MIRROR picks the mirror.
set -euo pipefail

IMAGE=${1:-localhost/cp-migration-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ENGINE=${CONTAINER_ENGINE:-podman}

if "$ENGINE" image exists "$IMAGE" 2>/dev/null; then
    echo "base image $IMAGE exists; reusing it" >&2
    echo "$IMAGE"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: run hack/podman-setup.sh (or apt-get install debootstrap)" >&2
    exit 1
}

work=$(mktemp -d /var/tmp/cp-base-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
started=$(date +%s)
echo "debootstrap bookworm (minbase + python3, python3-venv) from $MIRROR ..." >&2
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2
    exit 1
}
# What an image needs no copy of: package caches and lists, documentation, man pages.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
tar --numeric-owner -C "$root" -c . |
    "$ENGINE" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/usr/bin/python3"]' \
        --message "debootstrap bookworm minbase + python3 python3-venv" \
        - "$IMAGE" >&2
echo "base image $IMAGE made in $(($(date +%s) - started))s" >&2
echo "$IMAGE"
