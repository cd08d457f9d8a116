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
	"syscall"
	"time"

	"github.com/katka-io/katka/firmware"
)

// SupervisorOptions configure a Supervisor.
type SupervisorOptions struct {
	// Binary is the stable katka binary (replaced on commit).
	Binary string
	// Dir is the state directory.
	Dir string
	// Args are the arguments after the binary for the child ("serve", flags).
	Args []string
	// Enabled turns trials on; off, the supervisor only restarts serve.
	Enabled bool
	// HealthWindow is how long a trial may take to report healthy.
	HealthWindow time.Duration
	// MaxAttempts bounds the trial starts of one version.
	MaxAttempts int
	// StopGrace is how long a child has after SIGTERM before SIGKILL (default 15s).
	StopGrace time.Duration
	Log       *slog.Logger
	// Stdout, Stderr are the child's (default os.Stdout, os.Stderr).
	Stdout, Stderr io.Writer
}

// Supervisor runs `katka serve` as its child, restarts it when it exits on
// its own, and owns the binary swap: trial, commit, rollback.
type Supervisor struct {
	o   SupervisorOptions
	log *slog.Logger
}

// NewSupervisor checks o and returns a Supervisor.
func NewSupervisor(o SupervisorOptions) (*Supervisor, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 15 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 1
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	abs, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	o.Binary = abs
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("self-update dir: %w", err)
	}
	return &Supervisor{o: o, log: o.Log.With("component", "supervise")}, nil
}

func (s *Supervisor) newPath() string  { return s.o.Binary + newSuffix }
func (s *Supervisor) prevPath() string { return s.o.Binary + prevSuffix }

// child is a running serve process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (s *Supervisor) start(bin, trial string) (*child, error) {
	cmd := exec.Command(bin, s.o.Args...)
	cmd.Stdout, cmd.Stderr = s.o.Stdout, s.o.Stderr
	cmd.Env = append(os.Environ(), EnvSupervised+"="+s.o.Binary, EnvTrial+"="+trial)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop sends SIGTERM, and SIGKILL after the grace period.
func (s *Supervisor) stop(c *child) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(s.o.StopGrace):
		s.log.Warn("child did not stop in time; killing it", "pid", c.cmd.Process.Pid, "grace", s.o.StopGrace)
		c.cmd.Process.Kill()
		<-c.done
	}
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Run supervises until ctx ends (SIGTERM/SIGINT to the supervisor), then
// stops the child and returns.
func (s *Supervisor) Run(ctx context.Context) error {
	backoff := time.Second
	var c *child
	for ctx.Err() == nil {
		st, err := LoadState(s.o.Dir)
		if err != nil {
			return err
		}
		if c == nil {
			if err := s.recover(&st); err != nil {
				return err
			}
			if st.Trial != nil {
				c = s.trial(ctx, &st)
				continue
			}
			if c, err = s.start(s.o.Binary, ""); err != nil {
				return fmt.Errorf("start %s: %w", s.o.Binary, err)
			}
			s.log.Info("serve started", "pid", c.cmd.Process.Pid, "binary", s.o.Binary)
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			s.stop(c)
			return nil
		case <-c.done:
		}
		s.log.Info("serve exited", "pid", c.cmd.Process.Pid, "status", exitText(c.err))
		c = nil
		if ok, _ := readJSON(filepath.Join(s.o.Dir, stagedFile), &Staged{}); ok && s.o.Enabled {
			backoff = time.Second
			continue // recover() turns it into a trial
		}
		if time.Since(t0) > time.Minute {
			backoff = time.Second
		}
		s.log.Warn("serve exited on its own; restarting", "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	if c != nil { // stopped right after a commit handed over the running trial
		s.stop(c)
	}
	return nil
}

// recover brings the on-disk state to one of two resting points, whatever
// step a power cut or crash interrupted: no trial (start the stable binary)
// or a trial with its staged binary in place (start it).
func (s *Supervisor) recover(st *State) error {
	os.Remove(s.prevPath() + ".tmp")
	os.Remove(s.newPath() + ".tmp")
	var staged Staged
	hasStaged, err := readJSON(filepath.Join(s.o.Dir, stagedFile), &staged)
	if err != nil {
		s.log.Warn("damaged staged.json; dropping the staged binary", "err", err)
		hasStaged = false
	}
	_, newErr := os.Stat(s.newPath())
	hasNew := newErr == nil
	switch {
	case st.Trial != nil && !hasNew:
		// The commit's renames ran; only its record is missing?
		if sum, err := hashFile(s.o.Binary); err == nil && sum == st.Trial.SHA256 {
			s.commitRecord(st, "commit completed before a restart")
		} else {
			s.fail(st, "the staged binary disappeared during its trial")
		}
	case st.Trial == nil && hasStaged && s.o.Enabled:
		sum, err := hashFile(s.newPath())
		switch {
		case err != nil || sum != staged.SHA256:
			s.log.Warn("staged binary missing or changed; not trying it", "version", staged.Version, "err", err)
			os.Remove(s.newPath())
		case st.Bad[staged.Version] != "":
			s.log.Warn("staged version is recorded as bad; not trying it", "version", staged.Version, "bad", st.Bad[staged.Version])
			os.Remove(s.newPath())
		default:
			st.Trial = &Trial{Version: staged.Version, SHA256: staged.SHA256, From: staged.From}
			st.add(Result{Time: time.Now().UTC(), Version: staged.Version, From: staged.From, Result: ResultStaged, Detail: "staged as " + s.newPath()})
			if err := s.save(st); err != nil {
				return err
			}
		}
	case st.Trial == nil && hasNew:
		s.log.Info("removing a staged binary without a request (interrupted staging)", "path", s.newPath())
		os.Remove(s.newPath())
	}
	if hasStaged {
		os.Remove(filepath.Join(s.o.Dir, stagedFile))
		firmware.SyncDir(s.o.Dir)
	}
	return nil
}

func (s *Supervisor) save(st *State) error {
	if err := writeJSON(filepath.Join(s.o.Dir, stateFile), st); err != nil {
		return fmt.Errorf("self-update state: %w", err)
	}
	return nil
}

// trial starts the staged binary and waits for its health report: on it the
// binary is committed and the running child returned; on exit, timeout or a
// spent attempt budget it is rolled back (nil returned: start the stable one).
func (s *Supervisor) trial(ctx context.Context, st *State) *child {
	t := st.Trial
	if t.Attempts >= s.o.MaxAttempts {
		s.fail(st, fmt.Sprintf("%d trial starts did not finish (power cut or supervisor stopped during the health window)", t.Attempts))
		return nil
	}
	t.Attempts++
	t.Started = time.Now().UTC()
	if err := s.save(st); err != nil {
		s.log.Error("self-update", "err", err)
		return nil
	}
	os.Remove(filepath.Join(s.o.Dir, healthyFile))
	c, err := s.start(s.newPath(), t.Version)
	if err != nil {
		s.fail(st, "start: "+err.Error())
		return nil
	}
	s.log.Info("self-update trial started", "version", t.Version, "from", t.From, "pid", c.cmd.Process.Pid, "attempt", t.Attempts, "health_window", s.o.HealthWindow)
	deadline := time.NewTimer(s.o.HealthWindow)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Stopped mid-trial: the trial stays recorded, counted as an attempt.
			s.stop(c)
			return nil
		case <-c.done:
			s.fail(st, fmt.Sprintf("exited before reporting healthy (%s)", exitText(c.err)))
			return nil
		case <-deadline.C:
			s.stop(c)
			s.fail(st, fmt.Sprintf("not healthy within the health window of %s", s.o.HealthWindow))
			return nil
		case <-tick.C:
			var h Healthy
			if ok, _ := readJSON(filepath.Join(s.o.Dir, healthyFile), &h); ok && h.PID == c.cmd.Process.Pid && h.Version == t.Version {
				if err := s.commit(st); err != nil {
					s.log.Error("self-update commit failed; rolling back", "err", err)
					s.stop(c)
					s.fail(st, "commit: "+err.Error())
					return nil
				}
				return c
			}
		}
	}
}

// commit makes the trial binary the stable one. The stable path exists at
// every instant: katka is hard-linked (or copied) to katka.prev first, then
// katka.new is renamed over katka.
func (s *Supervisor) commit(st *State) error {
	tmp := s.prevPath() + ".tmp"
	os.Remove(tmp)
	if err := os.Link(s.o.Binary, tmp); err != nil {
		if err := copyFile(s.o.Binary, tmp); err != nil {
			return fmt.Errorf("keep previous binary: %w", err)
		}
	}
	if err := os.Rename(tmp, s.prevPath()); err != nil {
		return err
	}
	if err := os.Rename(s.newPath(), s.o.Binary); err != nil {
		return err
	}
	if err := firmware.SyncDir(filepath.Dir(s.o.Binary)); err != nil {
		return err
	}
	s.commitRecord(st, "healthy within the health window")
	return nil
}

func (s *Supervisor) commitRecord(st *State, detail string) {
	t := st.Trial
	st.Previous, st.Current, st.Trial = t.From, t.Version, nil
	st.add(Result{Time: time.Now().UTC(), Version: t.Version, From: t.From, Result: ResultCommitted, Detail: detail})
	if err := s.save(st); err != nil {
		s.log.Error("self-update", "err", err)
	}
	s.log.Info("self-update committed", "version", t.Version, "from", t.From, "previous_binary", s.prevPath())
}

// fail rolls a trial back: the staged binary is deleted (the stable one was
// never touched), the version recorded as bad.
func (s *Supervisor) fail(st *State, reason string) {
	t := st.Trial
	os.Remove(s.newPath())
	firmware.SyncDir(filepath.Dir(s.o.Binary))
	st.Bad[t.Version] = reason
	st.Trial = nil
	st.add(Result{Time: time.Now().UTC(), Version: t.Version, From: t.From, Result: ResultRolledBack, Detail: reason})
	if err := s.save(st); err != nil {
		s.log.Error("self-update", "err", err)
	}
	s.log.Error("self-update rolled back; the previous binary runs again", "version", t.Version, "back_to", t.From, "reason", reason)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
