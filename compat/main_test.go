package compat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Paths of the binaries TestMain builds once for all tests.
var (
	etcdctlBin string
	synodBin   string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "synod-compat-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "compat:", err)
		return 1
	}
	return m.Run()
}

// buildBinaries builds etcdctl from this module (the version its tool
// directive pins) and synod from the product module, exactly as the
// product's own go.mod resolves it.
func buildBinaries(dir string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return fmt.Errorf("locating the product module: %w", err)
	}
	if !bytes.HasPrefix(gomod, []byte("module github.com/synod-db/synod\n")) {
		return fmt.Errorf("%s/go.mod is not the synod module", root)
	}
	etcdctlBin = filepath.Join(dir, "etcdctl")
	synodBin = filepath.Join(dir, "synod")
	if err := goBuild(".", etcdctlBin, "go.etcd.io/etcd/etcdctl/v3"); err != nil {
		return err
	}
	return goBuild(root, synodBin, "github.com/synod-db/synod/cmd/synod")
}

func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", pkg, dir, err, b)
	}
	return nil
}
