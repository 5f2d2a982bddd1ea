//go:build tools

// Package tools pins the upstream snapshot-controller this module builds; it has no code.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)
