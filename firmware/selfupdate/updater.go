package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/firmware"
	"github.com/katka-io/katka/firmware/store"
)

// Source is what the updater needs of the firmware store.
type Source interface {
	Subscribe() <-chan struct{}
	Available() []firmware.Manifest
	Open(name, version string) (*os.File, firmware.Manifest, error)
	Report(ctx context.Context, f store.Feedback) error
}

// Options configure an Updater.
type Options struct {
	Store Source
	// Prefix is the artefact name prefix (firmware.self_update.name).
	Prefix string
	// Dir is the state directory.
	Dir string
	// Version is the running version.
	Version string
	// Binary is the stable binary path when supervised ("" = not supervised).
	Binary string
	// Trial is the version on trial ("" outside a trial).
	Trial string
	// Device is the key of this gateway's feedback records.
	Device string
	// Healthy reports nil once serve is fully up (listeners, storage, sync).
	Healthy func(ctx context.Context) error
	// Restart asks serve to shut down cleanly, so the supervisor takes over.
	Restart    func()
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Updater is the serve side of self-update: health report, staging, feedback.
type Updater struct {
	o     Options
	log   *slog.Logger
	total *prometheus.CounterVec

	mu      sync.Mutex
	healthy bool
	serve   serveState
	note    string
}

// NewUpdater returns an Updater; Run drives it.
func NewUpdater(o Options) *Updater {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	u := &Updater{o: o, log: o.Log.With("component", "selfupdate"), serve: serveState{Rejected: map[string]string{}}}
	u.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_firmware_self_update_total",
		Help: "Self-update steps by result (staged, committed, rolled_back, rejected), since the state directory was created."}, []string{"result"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(u.total)
	}
	return u
}

func (u *Updater) serveStatePath() string { return filepath.Join(u.o.Dir, serveFile) }

// Run reports health, sends results as feedback, then waits for a newer
// artefact for this platform and stages it.
func (u *Updater) Run(ctx context.Context) {
	if err := os.MkdirAll(u.o.Dir, 0o755); err != nil {
		u.log.Error("self-update dir", "err", err)
		return
	}
	if _, err := readJSON(u.serveStatePath(), &u.serve); err != nil {
		u.log.Warn("self-update serve state", "err", err)
	}
	if u.serve.Rejected == nil {
		u.serve.Rejected = map[string]string{}
	}
	st, err := LoadState(u.o.Dir)
	if err != nil {
		u.log.Warn("self-update state", "err", err)
	}
	for _, r := range []string{ResultStaged, ResultCommitted, ResultRolledBack, ResultRejected} {
		n := st.Totals[r]
		if r == ResultRejected {
			n = len(u.serve.Rejected)
		}
		u.total.WithLabelValues(r).Add(float64(n))
	}
	// Health: the supervisor commits a trial on this marker.
	for {
		err := u.o.Healthy(ctx)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := writeJSON(filepath.Join(u.o.Dir, healthyFile), Healthy{PID: os.Getpid(), Version: u.o.Version, Time: time.Now().UTC()}); err != nil {
		u.log.Error("self-update health marker", "err", err)
	}
	u.mu.Lock()
	u.healthy = true
	u.mu.Unlock()
	u.log.Info("healthy", "version", u.o.Version, "trial", u.o.Trial != "", "supervised", u.o.Binary != "")
	if u.o.Trial != "" {
		// Wait for the supervisor's commit before reporting or staging more.
		for ctx.Err() == nil {
			if st, _ := LoadState(u.o.Dir); st.Trial == nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	u.report(ctx)
	if u.o.Binary == "" {
		u.setNote("not running under `katka supervise`: katka artefacts are kept in the store but not installed")
		u.log.Warn("self-update is enabled but katka runs without `katka supervise`; updates are not installed")
		return
	}
	sub := u.o.Store.Subscribe()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub:
		case <-retry:
		}
		m, ok := u.candidate()
		if !ok {
			continue
		}
		if err := u.stage(ctx, m); err != nil {
			if ctx.Err() != nil {
				return
			}
			var bad badArtefact
			if errors.As(err, &bad) {
				u.reject(ctx, m, err.Error())
				continue
			}
			// A local problem (permissions, disk full): not the artefact's
			// fault, so it is tried again a minute later.
			u.setNote(fmt.Sprintf("staging %s failed, retrying: %v", m.Version, err))
			u.log.Error("self-update cannot stage; retrying in a minute", "version", m.Version, "err", err)
			retry = time.After(time.Minute)
			continue
		}
		u.total.WithLabelValues(ResultStaged).Inc()
		u.log.Info("self-update staged; restarting into it", "version", m.Version, "from", u.o.Version, "binary", u.o.Binary+newSuffix)
		u.o.Restart()
		return
	}
}

func (u *Updater) setNote(s string) {
	u.mu.Lock()
	u.note = s
	u.mu.Unlock()
}

// candidate is the highest available artefact for this platform above the
// running version that is neither bad nor rejected.
func (u *Updater) candidate() (firmware.Manifest, bool) {
	st, _ := LoadState(u.o.Dir)
	name := ArtefactName(u.o.Prefix)
	var best firmware.Manifest
	found := false
	for _, m := range u.o.Store.Available() {
		if m.Name != name || (len(m.Selector.Hardware) > 0 && !slices.Contains(m.Selector.Hardware, Platform())) {
			continue
		}
		if firmware.CompareVersions(m.Version, u.o.Version) <= 0 || st.Bad[m.Version] != "" {
			continue
		}
		u.mu.Lock()
		rej := u.serve.Rejected[m.Version]
		u.mu.Unlock()
		if rej != "" {
			continue
		}
		if !found || firmware.CompareVersions(m.Version, best.Version) > 0 {
			best, found = m, true
		}
	}
	return best, found
}

// stage copies the artefact to katka.new (hash checked, fsynced, 0755),
// checks that it runs and says it is katka of the manifest's version, and
// records the request in staged.json.
func (u *Updater) stage(ctx context.Context, m firmware.Manifest) error {
	src, m, err := u.o.Store.Open(m.Name, m.Version)
	if err != nil {
		return err
	}
	defer src.Close()
	newPath := u.o.Binary + newSuffix
	tmp := newPath + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("stage beside %s: %w", u.o.Binary, err)
	}
	sum, err := firmware.HashReader(io.TeeReader(src, out))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && sum != m.SHA256 {
		err = badArtefact{fmt.Errorf("copy has sha256 %s, manifest says %s", sum, m.SHA256)}
	}
	if err == nil {
		err = checkVersion(ctx, tmp, m.Version)
	}
	if err == nil {
		err = os.Rename(tmp, newPath)
	}
	if err == nil {
		err = firmware.SyncDir(filepath.Dir(newPath))
	}
	if err == nil {
		err = writeJSON(filepath.Join(u.o.Dir, stagedFile), Staged{Version: m.Version, SHA256: m.SHA256, From: u.o.Version, PID: os.Getpid(), Time: time.Now().UTC()})
	}
	if err != nil {
		os.Remove(tmp)
		os.Remove(newPath)
	}
	return err
}

// badArtefact is a staging error that is the artefact's fault: the version
// is rejected for good (other errors are retried).
type badArtefact struct{ error }

// checkVersion runs `BIN version` and expects "katka VERSION".
func checkVersion(ctx context.Context, bin, version string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, "version").Output()
	if err != nil {
		return badArtefact{fmt.Errorf("`%s version` failed: %v", filepath.Base(bin), err)}
	}
	if got := strings.TrimSpace(string(out)); got != "katka "+version {
		if len(got) > 100 {
			got = got[:100]
		}
		return badArtefact{fmt.Errorf("`version` says %q, want %q", got, "katka "+version)}
	}
	return nil
}

func (u *Updater) reject(ctx context.Context, m firmware.Manifest, reason string) {
	u.mu.Lock()
	u.serve.Rejected[m.Version] = reason
	err := writeJSON(u.serveStatePath(), u.serve)
	u.mu.Unlock()
	if err != nil {
		u.log.Error("self-update serve state", "err", err)
	}
	u.total.WithLabelValues(ResultRejected).Inc()
	u.log.Error("self-update rejected an artefact; it is not installed", "version", m.Version, "reason", reason)
	u.feedback(ctx, store.Feedback{Name: m.Name, Version: m.Version, State: "failed", RunningVersion: u.o.Version, Detail: "rejected: " + reason})
}

// report sends each supervisor result not yet sent as a feedback record.
func (u *Updater) report(ctx context.Context) {
	st, err := LoadState(u.o.Dir)
	if err != nil {
		return
	}
	u.mu.Lock()
	from := u.serve.Reported
	u.mu.Unlock()
	name := ArtefactName(u.o.Prefix)
	for _, r := range st.Results {
		if r.Seq <= from {
			continue
		}
		f := store.Feedback{Name: name, Version: r.Version, RunningVersion: u.o.Version, Detail: r.Result + ": " + r.Detail}
		switch r.Result {
		case ResultCommitted:
			f.State = "running"
		case ResultRolledBack:
			f.State = "failed"
		default:
			f.State = "installed"
		}
		if !u.feedback(ctx, f) {
			return
		}
		u.mu.Lock()
		u.serve.Reported = r.Seq
		err := writeJSON(u.serveStatePath(), u.serve)
		u.mu.Unlock()
		if err != nil {
			u.log.Error("self-update serve state", "err", err)
			return
		}
	}
}

func (u *Updater) feedback(ctx context.Context, f store.Feedback) bool {
	f.Device = u.o.Device
	if len(f.Detail) > 1024 {
		f.Detail = f.Detail[:1024]
	}
	if err := u.o.Store.Report(ctx, f); err != nil {
		u.log.Warn("self-update feedback", "err", err)
		return false
	}
	return true
}

// Status is GET /v1/status/selfupdate.
type Status struct {
	Platform       string            `json:"platform"`
	Artefact       string            `json:"artefact"`
	RunningVersion string            `json:"running_version"`
	Supervised     bool              `json:"supervised"`
	Binary         string            `json:"binary,omitempty"`
	Healthy        bool              `json:"healthy"`
	Trial          *Trial            `json:"trial,omitempty"`
	Previous       string            `json:"previous,omitempty"`
	Bad            map[string]string `json:"bad"`
	Rejected       map[string]string `json:"rejected"`
	Results        []Result          `json:"results"`
	Note           string            `json:"note,omitempty"`
}

// Status returns the self-update state as this process sees it.
func (u *Updater) Status() Status {
	st, _ := LoadState(u.o.Dir)
	u.mu.Lock()
	defer u.mu.Unlock()
	res := st.Results
	if len(res) > 10 {
		res = res[len(res)-10:]
	}
	rej := map[string]string{}
	for k, v := range u.serve.Rejected {
		rej[k] = v
	}
	return Status{Platform: Platform(), Artefact: ArtefactName(u.o.Prefix), RunningVersion: u.o.Version, Supervised: u.o.Binary != "",
		Binary: u.o.Binary, Healthy: u.healthy, Trial: st.Trial, Previous: st.Previous, Bad: st.Bad, Rejected: rej, Results: append([]Result{}, res...), Note: u.note}
}
