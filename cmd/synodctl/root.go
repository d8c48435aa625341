package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of synodctl.
const (
	exitOK    = 0
	exitError = 1
)

// Output formats accepted by --write-out.
const (
	formatSimple = "simple"
	formatJSON   = "json"
	formatTable  = "table"
)

// Environment variable prefixes: SYNODCTL_<FLAG> first, then etcdctl's
// ETCDCTL_<FLAG> so that an existing etcdctl setup keeps working.
var envPrefixes = []string{"SYNODCTL_", "ETCDCTL_"}

// formatsAnnotation is the cobra annotation listing the output formats a
// command supports; commands without it support simple and json.
const formatsAnnotation = "synodctl/formats"

// globalFlags holds the persistent flags shared by every command.
type globalFlags struct {
	endpoints      []string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	writeOut       string
	hex            bool

	user     string
	password string

	cacert                string
	cert                  string
	key                   string
	insecureSkipTLSVerify bool
}

// app is one invocation of synodctl: its writers, its environment, the way it
// connects to servers, and the global flags once parsed. Nothing lives in
// package variables, so tests can run many commands in one process.
type app struct {
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
	dial      dialFunc
	g         globalFlags
}

// newRootCommand returns the synodctl command tree writing its output to
// stdout and its diagnostics to stderr. It reads the process environment for
// SYNODCTL_*/ETCDCTL_* settings and dials real servers.
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv, dial: dialEtcd}
	return a.rootCommand()
}

// run executes synodctl with args and returns the process exit code. Errors
// are printed to stderr as "Error: <message>", followed by the usage line
// when the arguments were at fault.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetIn(stdin)
	root.SetArgs(args)
	return execute(ctx, root, stderr)
}

// execute runs a prepared root command and turns its outcome into an exit code.
func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	_, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	reportError(stderr, err)
	return exitError
}

// reportError prints err the way synodctl reports every failure.
func reportError(w io.Writer, err error) {
	fmt.Fprintf(w, "Error: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd != nil {
		fmt.Fprintf(w, "Usage: %s\n", ue.cmd.UseLine())
		fmt.Fprintf(w, "Run '%s --help' for more information.\n", ue.cmd.CommandPath())
	}
}

// usageError is an error in the command line (arguments or flags) rather than
// in carrying the command out.
type usageError struct {
	cmd *cobra.Command
	msg string
}

// Error returns the message without the usage, which reportError adds.
func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a usageError for cmd.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// argsBetween returns a cobra.PositionalArgs accepting lo to hi arguments,
// whose error names the expected arguments (e.g. "<key> [range_end]").
func argsBetween(lo, hi int, expected string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= lo && len(args) <= hi {
			return nil
		}
		switch {
		case len(args) == 0:
			return usageErrorf(cmd, "%s expects %s, got no arguments", cmd.Name(), expected)
		case len(args) < lo:
			return usageErrorf(cmd, "%s expects %s, got only %d argument(s): %s", cmd.Name(), expected, len(args), quoteArgs(args))
		default:
			return usageErrorf(cmd, "%s expects %s, got %d arguments: %s", cmd.Name(), expected, len(args), quoteArgs(args))
		}
	}
}

// noArgs is argsBetween(0, 0, ...) with a message that fits commands taking none.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usageErrorf(cmd, "%s takes no arguments, got %s", cmd.Name(), quoteArgs(args))
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(q, " ")
}

// groupCommand returns a command that only holds subcommands: run bare it
// prints its help; run with an unknown subcommand it fails with a usage error.
func groupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			names := make([]string, 0, len(cmd.Commands()))
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			return usageErrorf(cmd, "unknown %s subcommand %q (want one of: %s)", cmd.Name(), args[0], strings.Join(names, ", "))
		},
	}
	c.AddCommand(subs...)
	return c
}

// setFormats records the output formats cmd supports.
func setFormats(cmd *cobra.Command, formats ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[formatsAnnotation] = strings.Join(formats, ",")
	return cmd
}

// supportedFormats lists the output formats cmd supports.
func supportedFormats(cmd *cobra.Command) []string {
	if f, ok := cmd.Annotations[formatsAnnotation]; ok {
		return strings.Split(f, ",")
	}
	return []string{formatSimple, formatJSON}
}

// rootCommand builds the command tree for a.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "synodctl",
		Short: "A command-line client for synod, the etcd v3 API compatible key-value store",
		Long: `synodctl talks to synod (or any etcd v3 API server) over gRPC.

Global flags can also be set through the environment: SYNODCTL_<FLAG> with the
flag name in upper case and dashes as underscores (SYNODCTL_ENDPOINTS,
SYNODCTL_WRITE_OUT, ...), falling back to etcdctl's ETCDCTL_<FLAG>. A flag given
on the command line wins over the environment.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.prepare,
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c, msg: err.Error()}
	})
	a.bindGlobalFlags(root.PersistentFlags())
	root.AddCommand(
		a.putCommand(),
		a.getCommand(),
		a.delCommand(),
		a.txnCommand(),
		a.watchCommand(),
		a.compactionCommand(),
		a.memberCommand(),
		a.endpointCommand(),
		a.moveLeaderCommand(),
		a.snapshotCommand(),
		a.defragCommand(),
		a.alarmCommand(),
		a.leaseCommand(),
		a.versionCommand(),
	)
	return root
}

// bindGlobalFlags declares the persistent flags on fs.
func (a *app) bindGlobalFlags(fs *pflag.FlagSet) {
	g := &a.g
	fs.StringSliceVar(&g.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints, comma separated")
	fs.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "timeout for establishing a connection")
	fs.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "timeout for each request of a command (for snapshot save: the longest wait for data)")
	fs.StringVarP(&g.writeOut, "write-out", "w", formatSimple, "output format: simple, json or table")
	fs.BoolVar(&g.hex, "hex", false, "print keys and values as hex-escaped bytes (simple output)")
	fs.StringVar(&g.user, "user", "", "user name[:password] for authentication")
	fs.StringVar(&g.password, "password", "", "password for authentication (if not given in --user)")
	fs.StringVar(&g.cacert, "cacert", "", "verify server certificates with this CA bundle (enables TLS)")
	fs.StringVar(&g.cert, "cert", "", "client certificate file for TLS (with --key)")
	fs.StringVar(&g.key, "key", "", "client key file for TLS (with --cert)")
	fs.BoolVar(&g.insecureSkipTLSVerify, "insecure-skip-tls-verify", false, "use TLS but do not verify the server certificate")
}

// prepare runs before every command: it fills unset global flags from the
// environment and checks them. Cobra runs only the nearest
// PersistentPreRunE, so subcommands (and the watch and lease groups to come)
// must not declare their own.
func (a *app) prepare(cmd *cobra.Command, _ []string) error {
	if err := a.applyEnv(cmd.Root().PersistentFlags()); err != nil {
		return err
	}
	g := &a.g
	var eps []string
	for _, e := range g.endpoints {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return usageErrorf(cmd, "no endpoints given: set --endpoints or SYNODCTL_ENDPOINTS")
	}
	g.endpoints = eps
	if g.dialTimeout <= 0 {
		return usageErrorf(cmd, "--dial-timeout must be positive, got %v", g.dialTimeout)
	}
	if g.commandTimeout <= 0 {
		return usageErrorf(cmd, "--command-timeout must be positive, got %v", g.commandTimeout)
	}
	g.writeOut = strings.ToLower(strings.TrimSpace(g.writeOut))
	switch g.writeOut {
	case formatSimple, formatJSON, formatTable:
	default:
		return usageErrorf(cmd, "unknown output format %q: want simple, json or table", g.writeOut)
	}
	if formats := supportedFormats(cmd); !slices.Contains(formats, g.writeOut) {
		return usageErrorf(cmd, "%q does not support --write-out=%s (use %s)", cmd.CommandPath(), g.writeOut, strings.Join(formats, " or "))
	}
	return nil
}

// applyEnv sets each persistent flag not given on the command line from
// SYNODCTL_<NAME>, or else ETCDCTL_<NAME>, when that variable is non-empty.
func (a *app) applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		for _, prefix := range envPrefixes {
			v, ok := a.lookupEnv(prefix + name)
			if !ok || v == "" {
				continue
			}
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q in environment variable %s%s: %v", v, prefix, name, serr)
			}
			return
		}
	})
	return err
}

// printer returns the output printer configured by the global flags.
func (a *app) printer() *printer {
	return &printer{w: a.stdout, format: a.g.writeOut, hex: a.g.hex}
}
