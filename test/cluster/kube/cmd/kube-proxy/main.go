// Command kube-proxy is the upstream kube-proxy, built from k8s.io/kubernetes
// for the local test cluster's optional real node: it programs the
// Services' ClusterIPs (iptables mode) so that clients on the host reach the
// real pgpool pods through a Service.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
