package selfupdate

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/katka-io/katka/firmware"
	"github.com/katka-io/katka/firmware/store"
)

// fakeSource is a store holding a fixed list of available manifests.
type fakeSource struct{ ms []firmware.Manifest }

func (f *fakeSource) Subscribe() <-chan struct{}                   { return make(chan struct{}) }
func (f *fakeSource) Available() []firmware.Manifest               { return f.ms }
func (f *fakeSource) Report(context.Context, store.Feedback) error { return nil }
func (f *fakeSource) Open(name, version string) (*os.File, firmware.Manifest, error) {
	return nil, firmware.Manifest{}, os.ErrNotExist
}

// TestCandidate: only this platform's artefact, above the running version,
// not bad, not rejected, with the platform in its hardware selector (or
// none), the highest first.
func TestCandidate(t *testing.T) {
	name := ArtefactName("katka")
	m := func(n, v string, hw ...string) firmware.Manifest {
		return firmware.Manifest{Name: n, Version: v, Selector: firmware.Selector{Hardware: hw}}
	}
	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, stateFile), State{Bad: map[string]string{"1.5.0": "exited"}}); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{}
	u := NewUpdater(Options{Store: src, Prefix: "katka", Dir: dir, Version: "1.2.0"})
	u.serve.Rejected["1.4.0"] = "version check"
	for _, tc := range []struct {
		name string
		ms   []firmware.Manifest
		want string
	}{
		{"nothing", nil, ""},
		{"other platform", []firmware.Manifest{m("katka-plan9-mips", "9.0.0"), m(name, "2.0.0", "plan9-mips")}, ""},
		{"not above the running version", []firmware.Manifest{m(name, "1.2.0"), m(name, "1.1.9")}, ""},
		{"bad and rejected skipped", []firmware.Manifest{m(name, "1.5.0"), m(name, "1.4.0"), m(name, "1.3.0", Platform())}, "1.3.0"},
		{"highest wins", []firmware.Manifest{m(name, "1.10.0"), m(name, "1.9.0")}, "1.10.0"},
		{"other artefact", []firmware.Manifest{m("plc-fw", "9.0.0"), m("katka", "9.0.0")}, ""},
	} {
		src.ms = tc.ms
		got, ok := u.candidate()
		if (tc.want == "") == ok || ok && got.Version != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got.Version, ok, tc.want)
		}
	}
}
