// A CoreDNS with only the plugins the registry tests need: etcd (the SkyDNS layout the operator's
// etcd entries carry), bind (loopback only), errors and log. Run as: coredns -conf Corefile.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/etcd"
	_ "github.com/coredns/coredns/plugin/log"
)

// The plugins' order within a server block (CoreDNS's own order, restricted to these four).
var directives = []string{"bind", "log", "errors", "etcd"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
