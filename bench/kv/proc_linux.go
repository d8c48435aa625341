package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// childAttr puts a server in its own process group, so a Ctrl-C at the
// terminal reaches only the harness (which then stops the servers in
// order), and has the kernel kill it if the harness dies without
// cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// fsType names the file system that holds path, for the report (fsync
// on tmpfs costs nothing, which would flatter every system).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x858458f6:
		return "ramfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x2fc12fc1:
		return "zfs"
	default:
		return fmt.Sprintf("0x%x", uint64(st.Type))
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fdatasync flushes f's data (and only the metadata needed to read it),
// as a WAL does after each write.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
