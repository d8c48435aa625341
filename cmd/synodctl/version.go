package main

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/version"
)

// synodctlVersion is the program's version; release builds set it with
// -ldflags "-X main.synodctlVersion=v1.2.3". Otherwise it comes from the
// module version in the build information, or is "dev".
var synodctlVersion = ""

// versionInfo is the output of the version command.
type versionInfo struct {
	Synodctl   string `json:"synodctl_version"`
	APIVersion string `json:"api_version"`
	Go         string `json:"go_version"`
}

func currentVersion() versionInfo {
	v := synodctlVersion
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return versionInfo{Synodctl: v, APIVersion: version.APIVersion, Go: runtime.Version()}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of synodctl and of the etcd API it speaks",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.printer().version(currentVersion())
		},
	}
}

// version prints the version lines.
func (p *printer) version(v versionInfo) error {
	if p.format == formatJSON {
		return p.json(v)
	}
	p.linef("synodctl version: %s", v.Synodctl)
	p.linef("API version: %s", v.APIVersion)
	p.linef("Go version: %s", v.Go)
	return nil
}
