//go:build tools

// Package tools pins the etcd server build used by localenv.
package tools

import _ "go.etcd.io/etcd/server/v3"
