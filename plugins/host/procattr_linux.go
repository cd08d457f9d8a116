package host

import "syscall"

// sysProcAttr makes the kernel SIGKILL a plugin when katka dies, even by
// SIGKILL. (Pdeathsig follows the thread that started the child; Go keeps
// its threads alive unless a goroutine exits locked to one, which katka never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
