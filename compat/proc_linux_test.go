package compat

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process if the test binary
// dies without running its cleanups (a panic or a -timeout), so that no
// synod or etcdctl is left behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
