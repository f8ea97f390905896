//go:build tools

// Package tools records the upstream commands this wrapper module builds, so that `go mod tidy`
// keeps their dependencies. testbin/build.py builds them with `go build <package>`. A module of its
// own, beside testbin/kube, so that adding the controller-manager and scheduler does not rebuild
// kube-apiserver.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
