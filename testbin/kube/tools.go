//go:build tools

// Package tools records the upstream commands this wrapper module builds, so that `go mod tidy`
// keeps their dependencies. testbin/build.py builds them with `go build <package>`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
