//go:build tools

// Package tools pins the node's main packages (kubelet, kube-controller-manager,
// kube-scheduler) so that `go mod tidy` records every module they need; the binaries are
// built straight from them, in one `go build`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
