package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3/command"
)

// The defaults of etcdctl's global flags.
const (
	defaultDialTimeout      = 2 * time.Second
	defaultCommandTimeout   = 5 * time.Second
	defaultKeepAliveTime    = 2 * time.Second
	defaultKeepAliveTimeout = 6 * time.Second
)

// newRootCommand returns the synodctl command tree: etcdctl's commands,
// with synod's restore added under `snapshot`.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "synodctl",
		Short: "The command-line client of synod (etcdctl's commands, speaking the etcd v3 API)",
	}
	// etcdctl's commands read these flags by name from the command line
	// they run in (and from ETCDCTL_* variables), not from this struct.
	var g command.GlobalFlags
	addGlobalFlags(root.PersistentFlags(), &g)
	root.AddGroup(
		command.NewKVGroup(),
		command.NewClusterMaintenanceGroup(),
		command.NewConcurrencyGroup(),
		command.NewAuthenticationGroup(),
		command.NewUtilityGroup(),
	)
	snapshot := command.NewSnapshotCommand()
	snapshot.Short = "Save a member's snapshot; restore one into a new member's data directory"
	snapshot.AddCommand(snapshotRestoreCommand())
	root.AddCommand(
		command.NewGetCommand(),
		command.NewPutCommand(),
		command.NewDelCommand(),
		command.NewTxnCommand(),
		command.NewCompactionCommand(),
		command.NewAlarmCommand(),
		command.NewDefragCommand(),
		command.NewEndpointCommand(),
		command.NewMoveLeaderCommand(),
		command.NewWatchCommand(),
		command.NewVersionCommand(),
		command.NewLeaseCommand(),
		command.NewMemberCommand(),
		snapshot,
		command.NewMakeMirrorCommand(),
		command.NewLockCommand(),
		command.NewElectCommand(),
		command.NewAuthCommand(),
		command.NewUserCommand(),
		command.NewRoleCommand(),
		command.NewCheckCommand(),
		command.NewCompletionCommand(),
		command.NewDowngradeCommand(),
		command.NewOptionsCommand(root),
	)
	command.SetHelpCmdGroup(root)
	return root
}

// addGlobalFlags registers etcdctl's global flags, with its names and
// defaults, on fs.
func addGlobalFlags(fs *pflag.FlagSet, g *command.GlobalFlags) {
	fs.StringSliceVar(&g.Endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints")
	fs.BoolVar(&g.Debug, "debug", false, "enable client-side debug logging")
	fs.StringVarP(&g.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	fs.BoolVar(&g.IsHex, "hex", false, "print byte strings as hex encoded strings")
	fs.DurationVar(&g.DialTimeout, "dial-timeout", defaultDialTimeout, "dial timeout for client connections")
	fs.DurationVar(&g.CommandTimeOut, "command-timeout", defaultCommandTimeout, "timeout for short running command (excluding dial timeout)")
	fs.DurationVar(&g.KeepAliveTime, "keepalive-time", defaultKeepAliveTime, "keepalive time for client connections")
	fs.DurationVar(&g.KeepAliveTimeout, "keepalive-timeout", defaultKeepAliveTimeout, "keepalive timeout for client connections")
	fs.IntVar(&g.MaxCallSendMsgSize, "max-request-bytes", 0, "client-side request send limit in bytes (0: 2 MiB)")
	fs.IntVar(&g.MaxCallRecvMsgSize, "max-recv-bytes", 0, "client-side response receive limit in bytes (0: no limit)")
	fs.BoolVar(&g.Insecure, "insecure-transport", true, "disable transport security for client connections")
	fs.BoolVar(&g.InsecureDiscovery, "insecure-discovery", true, "accept insecure SRV records describing cluster endpoints")
	fs.BoolVar(&g.InsecureSkipVerify, "insecure-skip-tls-verify", false, "skip server certificate verification (for tests only)")
	fs.StringVar(&g.TLS.CertFile, "cert", "", "identify secure client using this TLS certificate file")
	fs.StringVar(&g.TLS.KeyFile, "key", "", "identify secure client using this TLS key file")
	fs.StringVar(&g.TLS.TrustedCAFile, "cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle")
	fs.StringVar(&g.Token, "auth-jwt-token", "", "JWT token used for authentication (instead of --user and --password)")
	fs.StringVar(&g.User, "user", "", "username[:password] for authentication (prompt if password is not supplied)")
	fs.StringVar(&g.Password, "password", "", "password for authentication (with --user holding no password)")
	fs.StringVarP(&g.TLS.ServerName, "discovery-srv", "d", "", "domain name to query for SRV records describing cluster endpoints")
	fs.StringVar(&g.DNSClusterServiceName, "discovery-srv-name", "", "service name to query when using DNS discovery")
}
