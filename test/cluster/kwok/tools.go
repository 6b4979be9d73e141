//go:build tools

// Package kwok pins sigs.k8s.io/kwok for the local test cluster; the binary is
// built with `go build sigs.k8s.io/kwok/cmd/kwok` from this module.
package kwok

import _ "sigs.k8s.io/kwok/cmd/kwok"
