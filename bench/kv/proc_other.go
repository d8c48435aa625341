//go:build !linux

package main

import (
	"os"
	"syscall"
	"time"
)

// childAttr puts a server in its own process group, so a Ctrl-C at the
// terminal reaches only the harness, which then stops the servers.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func fsType(string) string { return "unknown" }

func processCPU() time.Duration { return 0 }

// fdatasync falls back to a full sync where fdatasync does not exist.
func fdatasync(f *os.File) error { return f.Sync() }
