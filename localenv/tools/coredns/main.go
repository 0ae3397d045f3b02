// Command coredns is CoreDNS with only the plugins localenv's cluster DNS uses: the
// kubernetes plugin answers cluster.local from the API server; there is no forward plugin, so
// nothing is ever resolved outside the cluster.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// Only the directives compiled in, in CoreDNS's own order.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "loadbalance", "kubernetes"}
}

func main() {
	coremain.Run()
}
