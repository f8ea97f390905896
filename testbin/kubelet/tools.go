//go:build tools

// Package tools records the upstream command this wrapper module builds, so that `go mod tidy`
// keeps its dependencies. testbin/build.py builds it with `go build <package>`. A module of its
// own so that adding the node agent does not rebuild the control plane.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
