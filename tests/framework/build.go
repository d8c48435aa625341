package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildSynod builds a static synod binary (CGO_ENABLED=0, -trimpath) at
// out, for tests that run members as processes or in containers. It
// builds in the synod module's directory, whichever module the test
// belongs to, so that the binary has exactly the product's dependencies
// (a test module that also requires etcd's server would otherwise change
// them).
func BuildSynod(ctx context.Context, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed to build synod: %w", err)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", out, "./cmd/synod")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/synod (in %s): %v\n%s", root, err, b)
	}
	return nil
}

// moduleRoot returns the synod module's directory: this file's, two up.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the synod module: no caller information")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("locating the synod module: %w", err)
	}
	if !bytes.HasPrefix(gomod, []byte("module github.com/synod-db/synod\n")) {
		return "", fmt.Errorf("%s is not the synod module's go.mod", filepath.Join(root, "go.mod"))
	}
	return root, nil
}
