// Command synodctl is synod's command-line client. It is etcdctl: its
// commands are etcdctl's own (package go.etcd.io/etcd/etcdctl/v3/ctlv3/command),
// so flags, output formats, environment variables (ETCDCTL_*) and exit
// codes stay what etcdctl users know, release after release, for free.
// synod adds what only it has: `snapshot restore`, which builds a synod
// member's data directory from a saved snapshot.
//
//	synodctl --endpoints=127.0.0.1:2379 put greeting hello
//	synodctl get --prefix greet
//	synodctl member list -w table
//	synodctl snapshot save backup.db
//	synodctl snapshot restore backup.db --name m1 --data-dir m1.etcd
//
// Run "synodctl --help" for the list of commands.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/pkg/v3/cobrautl"
)

func main() {
	cobra.EnablePrefixMatching = true // as etcdctl: "synodctl mem li"
	if err := newRootCommand().Execute(); err != nil {
		// etcdctl's commands report their own errors and exit; what
		// reaches here is cobra's (an unknown command or flag), which
		// it has printed with the usage.
		os.Exit(cobrautl.ExitBadArgs)
	}
}
