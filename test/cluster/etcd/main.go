// Command etcd is upstream etcd's server (etcdmain), built for the project's
// local test cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
