//go:build !linux

package host

import (
	"io"
	"os/exec"
)

// pluginCmd verifies m's executable (opened inside its directory) and
// returns the command running it. Without Linux's memfds the file is
// executed by path after the check: whoever can write the plugin's directory
// can swap it in between (katka's guarantee of running the checked bytes is
// Linux's).
func pluginCmd(m Manifest) (*exec.Cmd, io.Closer, error) {
	if err := m.Verify(); err != nil {
		return nil, nil, err
	}
	if afterVerify != nil {
		afterVerify(m)
	}
	return exec.Command(m.Path(), m.Args...), nopCloser{}, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
