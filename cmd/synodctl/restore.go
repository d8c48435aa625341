package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/pkg/v3/cobrautl"

	"github.com/synod-db/synod/server"
)

// snapshotRestoreCommand builds a member's data directory from a saved
// snapshot (what `snapshot save` wrote). It works on files only: no
// member is contacted. Errors end the process as etcdctl's do.
func snapshotRestoreCommand() *cobra.Command {
	var rc server.RestoreConfig
	var cluster, peerURLs string
	cmd := &cobra.Command{
		Use:   "restore <filename>",
		Short: "Create a new member's data directory from a saved snapshot",
		Long: `Restore creates --data-dir for one member of a NEW cluster whose keys are
those of the snapshot. Run it once per member, each with its own --name and
--initial-advertise-peer-urls and the same --initial-cluster and
--initial-cluster-token, then start each member with the same flags (the
data directory already exists, so --initial-cluster-state is not needed).`,
		Run: func(cmd *cobra.Command, args []string) {
			if len(args) != 1 {
				cobrautl.ExitWithError(cobrautl.ExitBadArgs, fmt.Errorf("snapshot restore requires exactly one argument: the snapshot file"))
			}
			rc.SnapshotPath = args[0]
			ic, err := server.ParseInitialCluster(cluster)
			if err != nil {
				cobrautl.ExitWithError(cobrautl.ExitBadArgs, fmt.Errorf("invalid --initial-cluster: %w", err))
			}
			rc.InitialCluster = ic
			rc.PeerURLs = strings.Split(peerURLs, ",")
			if rc.DataDir == "" {
				rc.DataDir = rc.Name + ".etcd"
			}
			if err := server.Restore(rc); err != nil {
				cobrautl.ExitWithError(cobrautl.ExitError, err)
			}
			fmt.Printf("Restored %s into %s for member %q\n", rc.SnapshotPath, rc.DataDir, rc.Name)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rc.Name, "name", "default", "name of the member being restored")
	f.StringVar(&rc.DataDir, "data-dir", "", "directory to create (default \"${name}.etcd\"); it must not exist")
	f.StringVar(&rc.WALDir, "wal-dir", "", "dedicated WAL directory (default: inside --data-dir)")
	f.StringVar(&cluster, "initial-cluster", "default=http://localhost:2380", "the new cluster: name=peer-url,...")
	f.StringVar(&rc.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "token of the new cluster")
	f.StringVar(&peerURLs, "initial-advertise-peer-urls", "http://localhost:2380", "this member's peer URLs")
	f.BoolVar(&rc.SkipHashCheck, "skip-hash-check", false, "accept a file without the trailing SHA-256 digest")
	return cmd
}
