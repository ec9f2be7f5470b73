# Functions the hack/ scripts share: `source "$(dirname "$0")/lib.sh"` (or ../lib.sh).

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian packages among the arguments that are not installed, one per line.
missing_packages() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            echo "$package"
    done
}

# The -ldflags that stamp a Kubernetes binary with its version, as its release build does
# (the apiserver reports it; kubelet and the node's components check it).
kube_ldflags() {
    local version=$1 major minor pkg=k8s.io/component-base/version
    major=${version#v}; major=${major%%.*}
    minor=${version#v*.}; minor=${minor%%.*}
    echo "-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
}
