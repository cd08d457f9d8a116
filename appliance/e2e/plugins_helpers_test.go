package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/katka-io/katka/plugins/plugintest"
	"github.com/katka-io/katka/plugins/sdk"
)

// examplePlugins builds the example plugins into a directory of the test
// (go's build cache makes all but the first build a link step).
func examplePlugins(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	plugintest.Build(t, dir, "./plugins/examples/filesink", "file-sink", sdk.KindSink)
	plugintest.Build(t, dir, "./plugins/examples/windowavg", "window-avg", sdk.KindProcessor)
	plugintest.Build(t, dir, "./plugins/examples/jsonroute", "json-route", sdk.KindPartitioner)
	plugintest.Build(t, dir, "./plugins/examples/filetail", "file-tail", sdk.KindSource)
	return dir
}

// childPID returns the pid of the child of parent whose command name or
// argv[0]'s base name is comm, or 0. (katka executes a plugin's sealed copy as
// /proc/self/fd/3, so the kernel's command name is "3"; argv[0] is the path
// of the manifest's command.)
func childPID(parent int, comm string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != parent {
			continue
		}
		if s[open+1:close] == comm {
			return pid
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); argv0 != "" && filepath.Base(argv0) == comm {
			return pid
		}
	}
	return 0
}
