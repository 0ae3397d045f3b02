//go:build tools

// Package tools pins the image-build servers and builder localenv runs: the Kaniko executor,
// the CNCF distribution registry and fake-gcs-server.
package tools

import (
	_ "github.com/GoogleContainerTools/kaniko/cmd/executor"
	_ "github.com/distribution/distribution/v3/cmd/registry"
	_ "github.com/fsouza/fake-gcs-server"
)
