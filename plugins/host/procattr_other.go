//go:build !linux

package host

import "syscall"

// sysProcAttr: only Linux has Pdeathsig; elsewhere plugins rely on go-plugin's cleanup.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
