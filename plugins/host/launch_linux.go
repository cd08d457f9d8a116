package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// sealedCopy copies the plugin's executable, opened inside its directory,
// into a memfd, seals the memfd against any write, resize or further seal,
// and checks the manifest's sha256 on the sealed copy. The copy is what katka
// executes, so the bytes checked are the bytes run: replacing or rewriting
// the file on disk after the check changes nothing (runc runs itself from a
// sealed memfd for the same reason, CVE-2019-5736).
func (m Manifest) sealedCopy() (*os.File, error) {
	f, err := m.openCommand()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	name := "katka-plugin:" + m.Name
	if len(name) > 200 {
		name = name[:200]
	}
	const flags = unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 6.3 there is no MFD_EXEC: memfds are executable.
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s: memfd_create for a sealed copy of %s: %w (vm.memfd_noexec must allow executable memfds)", m.Name, m.Path(), err)
	}
	mf := os.NewFile(uintptr(fd), "memfd:"+name)
	fail := func(what string, err error) (*os.File, error) {
		mf.Close()
		return nil, fmt.Errorf("plugin %s: %s of %s: %w", m.Name, what, m.Path(), err)
	}
	n, err := io.Copy(mf, f)
	if err != nil {
		return fail("sealed copy", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return fail("seal the copy", err)
	}
	if err := m.checkSum(io.NewSectionReader(mf, 0, n)); err != nil {
		mf.Close()
		return nil, err
	}
	if afterVerify != nil {
		afterVerify(m)
	}
	return mf, nil
}

// execFD is the descriptor the sealed copy has in the plugin process
// (ExtraFiles[0]).
const execFD = 3

// pluginCmd returns the command that runs the sealed, verified copy of m's
// executable, and the file the caller closes once the process started. The
// child executes /proc/self/fd/3, its own descriptor of the sealed copy; the
// descriptor stays open in the plugin so that an interpreter started through a
// #! line can read the script too. argv[0] is the path in the manifest.
func pluginCmd(m Manifest) (*exec.Cmd, io.Closer, error) {
	mf, err := m.sealedCopy()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", execFD), m.Args...)
	cmd.Args[0] = m.Path()
	cmd.ExtraFiles = []*os.File{mf}
	return cmd, mf, nil
}
