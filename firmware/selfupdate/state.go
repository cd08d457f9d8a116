// Package selfupdate installs new katka binaries from the firmware store, A/B
// style with a health window (RAUC, Mender, SWUpdate adapted to one static
// binary): the running `katka serve` (Updater) stages an available artefact
// <name>-<platform> beside its binary as katka.new and asks for a restart;
// `katka supervise` (Supervisor) starts katka.new for a trial, commits it
// (katka -> katka.prev, katka.new -> katka) once it reports healthy within
// the window, and otherwise kills it, deletes it, records the version as bad
// and starts the untouched previous binary again. The binary path always
// holds a binary that passed its health check, so a power cut at any step
// leaves a bootable katka. See firmware/README.md, "Self-update".
package selfupdate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/katka-io/katka/firmware"
)

// Results recorded in the state and counted in katka_firmware_self_update_total.
const (
	ResultStaged     = "staged"      // serve staged katka.new and asked for a restart
	ResultCommitted  = "committed"   // the new binary became healthy and replaced the old one
	ResultRolledBack = "rolled_back" // it did not; the previous binary runs again
	ResultRejected   = "rejected"    // serve refused to stage it (copy hash, `version` check)
)

// maxResults bounds the results kept in state.json.
const maxResults = 50

// Environment the supervisor sets for its serve child.
const (
	// EnvSupervised names the stable binary path; set only under `katka supervise`.
	EnvSupervised = "KATKA_SELFUPDATE_BINARY"
	// EnvTrial is the version on trial when the child is a new binary.
	EnvTrial = "KATKA_SELFUPDATE_TRIAL"
)

// File names in the state directory and beside the binary.
const (
	stateFile   = "state.json"   // owned by the supervisor
	stagedFile  = "staged.json"  // written by serve: a staged binary awaits a trial
	healthyFile = "healthy.json" // written by serve: this pid and version are healthy
	serveFile   = "serve.json"   // owned by serve: feedback reported, rejections
	newSuffix   = ".new"         // the staged binary, beside the stable one
	prevSuffix  = ".prev"        // the previous binary after a commit
)

// Trial is a version being tried (state.json); it outlives a power cut.
type Trial struct {
	Version  string    `json:"version"`
	SHA256   string    `json:"sha256"`
	From     string    `json:"from"`
	Attempts int       `json:"attempts"`
	Started  time.Time `json:"started"`
}

// Result is one finished step, reported once as feedback by serve.
type Result struct {
	Seq     int       `json:"seq"`
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	From    string    `json:"from"`
	Result  string    `json:"result"`
	Detail  string    `json:"detail"`
}

// State is state.json, written only by the supervisor.
type State struct {
	// Current is the version last committed ("" before the first update).
	Current string `json:"current,omitempty"`
	// Previous is the version kept as katka.prev.
	Previous string `json:"previous,omitempty"`
	Trial    *Trial `json:"trial,omitempty"`
	// Bad maps a version that failed its trial to why; never tried again.
	Bad     map[string]string `json:"bad"`
	Results []Result          `json:"results"`
	Totals  map[string]int    `json:"totals"`
	Seq     int               `json:"seq"`
}

// Staged is staged.json: serve copied and checked katka.new.
type Staged struct {
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	From    string    `json:"from"`
	PID     int       `json:"pid"`
	Time    time.Time `json:"time"`
}

// Healthy is healthy.json: the serve process pid running version is healthy.
type Healthy struct {
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
}

// serveState is serve.json, written only by serve.
type serveState struct {
	// Reported is the highest result seq sent as feedback.
	Reported int `json:"reported"`
	// Rejected maps versions serve refused to stage to why.
	Rejected map[string]string `json:"rejected"`
}

func (s *State) add(r Result) {
	s.Seq++
	r.Seq = s.Seq
	s.Results = append(s.Results, r)
	if len(s.Results) > maxResults {
		s.Results = s.Results[len(s.Results)-maxResults:]
	}
	s.Totals[r.Result]++
}

func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return firmware.WriteFileSync(path, data)
}

// LoadState reads state.json from dir (empty when missing).
func LoadState(dir string) (State, error) {
	var s State
	_, err := readJSON(filepath.Join(dir, stateFile), &s)
	if s.Bad == nil {
		s.Bad = map[string]string{}
	}
	if s.Totals == nil {
		s.Totals = map[string]int{}
	}
	return s, err
}

// Platform names the platform this binary runs on, as artefact names and
// hardware selectors spell it: linux-amd64, linux-arm64, linux-armv7.
func Platform() string {
	p := runtime.GOOS + "-" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		arm := "7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					arm = s.Value[:1]
				}
			}
		}
		p += "v" + arm
	}
	return p
}

// ArtefactName is the artefact a gateway of this platform installs.
func ArtefactName(prefix string) string { return prefix + "-" + Platform() }

// hashFile returns the hex sha256 of a file.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return firmware.HashReader(f)
}
