//go:build tools

// Package tools records the upstream command this wrapper module builds, so that `go mod tidy`
// keeps its dependencies. testbin/build.py builds it with `go build <package>`.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
