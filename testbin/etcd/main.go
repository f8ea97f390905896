// Command etcd runs the etcd server from the pinned go.etcd.io/etcd/server/v3 release (see go.mod).
// It exists only so that funcd's tests can build etcd from Go modules; it adds no behaviour.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
