#!/usr/bin/env bash
# The two images the test node needs besides the three step images, built FROM scratch with
# podman from Debian's static busybox (there is no registry to pull from):
#   localhost/cp-node/pause:local                   the Pod sandbox (containerd's sandbox_image)
#   localhost/cp-migration-test/operator:standin     the stand-in for the module's operator, the
#                                                    main container after the three steps
# Prints both references, one per line. Cached in podman's storage (rebuilt only when busybox
# or this script changes).
set -euo pipefail

PAUSE=localhost/cp-node/pause:local
OPERATOR=localhost/cp-migration-test/operator:standin
busybox=$(command -v busybox)
key=$(cat "$busybox" "$0" | sha256sum | cut -c1-16)

build() {
    local ref=$1 file=$2 context
    if [ "$(podman image inspect --format '{{index .Labels "cp-node.key"}}' "$ref" 2>/dev/null)" = "$key" ]; then
        return
    fi
    context=$(mktemp -d)
    cp "$busybox" "$context/busybox"
    printf '%s\n' "$file" >"$context/Containerfile"
    podman build --runtime runc --network none --pull=never --label "cp-node.key=$key" \
        -t "$ref" "$context" >&2
    rm -rf "$context"
}

# PID 1 of every Pod sandbox: waits for SIGTERM/SIGINT and reaps its children.
build "$PAUSE" 'FROM scratch
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox", "sh", "-c", "trap \"exit 0\" TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"]'

# The operator after the migration: says it runs (a JSON line, as the steps log) and waits.
build "$OPERATOR" 'FROM scratch
COPY busybox /bin/busybox
USER 1337:1337
ENTRYPOINT ["/bin/busybox", "sh", "-c", "echo \"{\\\"level\\\":\\\"info\\\",\\\"logger\\\":\\\"operator\\\",\\\"msg\\\":\\\"operator stand-in running\\\"}\"; trap \"exit 0\" TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"]'

echo "$PAUSE"
echo "$OPERATOR"
