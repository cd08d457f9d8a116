package opcua

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs the node-opcua tests all side by side unless -test.parallel
// is given: each spends most of its time waiting for a server or a cut link
// (30 s in TestLinkCut30s), not on a core, so the default of one at a time per
// core would only add up their waits.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
