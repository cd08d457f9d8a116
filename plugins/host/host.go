package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	pb "github.com/katka-io/katka/plugins/proto"
	"github.com/katka-io/katka/plugins/sdk"
)

// MinBatch is the batch size katka waits up to plugins.batch_wait to reach.
const MinBatch = 100

// Options configure a Host.
type Options struct {
	// Config is the plugins section of katka's config.
	Config config.Plugins
	// DefaultPartitions is used for output topics whose instance gives none.
	DefaultPartitions int32
	// Registerer receives the plugin metrics (nil: none exported).
	Registerer prometheus.Registerer
	// Log receives katka's and the plugins' log lines.
	Log *slog.Logger
	// Links keeps each instance's process state (plugin/<instance>) for
	// /v1/status/links and katka_link_up (nil: not kept).
	Links *linkstate.Registry
	// StableAfter is how long a started plugin must keep running before it
	// counts as up (default 10 s): a plugin that crashes at every start
	// logs one WARN and reminders, not two lines per restart.
	StableAfter time.Duration
	// Singletons runs each instance (but partitioners, which serve this
	// node's writers in-process) on one node of a cell: nil outside a cell,
	// where every instance runs here.
	Singletons Singletons
}

// Singletons runs a named service while this node owns it in its cell; fn's
// context ends when the node loses it, and the service then runs on another
// node (cluster.Node.RunService, wired in cmd/katka).
type Singletons interface {
	RunService(ctx context.Context, name string, fn func(ctx context.Context, epoch int64))
}

// Host supervises the configured plugin instances.
type Host struct {
	b      *broker.Broker
	cfg    config.Plugins
	defP   int32
	log    *slog.Logger
	m      *Metrics
	store  *store
	insts  []*instance
	byName map[string]*instance
	// stableAfter: a plugin running this long counts as up (Options.StableAfter).
	stableAfter time.Duration
	singletons  Singletons
}

// New discovers the plugins in opts.Config.Dir and checks every configured
// instance against its manifest (plugin exists, kind fits inputs and output).
// Executables are verified against their sha256 at every launch.
func New(b *broker.Broker, opts Options) (*Host, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	h := &Host{
		b: b, cfg: opts.Config, defP: opts.DefaultPartitions, log: log, stableAfter: opts.StableAfter, singletons: opts.Singletons,
		m:      NewMetrics(opts.Registerer),
		store:  &store{b: b, topic: opts.Config.StateTopic},
		byName: map[string]*instance{},
	}
	if h.defP < 1 {
		h.defP = 1
	}
	if h.stableAfter <= 0 {
		h.stableAfter = 10 * time.Second
	}
	if len(opts.Config.Instances) == 0 {
		return h, nil
	}
	ms, errs := Discover(opts.Config.Dir)
	for _, err := range errs {
		log.Warn("plugin skipped", "err", err)
	}
	byName := map[string]Manifest{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	var probs []error
	for i, ic := range opts.Config.Instances {
		path := fmt.Sprintf("plugins.instances[%d]", i)
		m, ok := byName[ic.Plugin]
		if !ok {
			probs = append(probs, fmt.Errorf("%s.plugin: no plugin %q in %s (found: %s)", path, ic.Plugin, opts.Config.Dir, names(ms)))
			continue
		}
		switch m.Kind {
		case sdk.KindSink, sdk.KindProcessor:
			if len(ic.Inputs) == 0 {
				probs = append(probs, fmt.Errorf("%s.inputs: plugin %s is a %s and needs at least one input topic", path, m.Name, m.Kind))
			}
		case sdk.KindPartitioner:
			if len(ic.Inputs) > 0 || ic.Output != "" {
				probs = append(probs, fmt.Errorf("%s: plugin %s is a partitioner: it takes no inputs or output (other instances name it in partitioner)", path, m.Name))
			}
		}
		if ic.Output != "" && ic.Output == opts.Config.StateTopic {
			probs = append(probs, fmt.Errorf("%s.output: %q is katka's plugin state topic (plugins.state_topic); plugins may not write to it", path, ic.Output))
		}
		if m.Kind == sdk.KindSource && ic.Output == "" {
			probs = append(probs, fmt.Errorf("%s.output: plugin %s is a source and needs an output topic", path, m.Name))
		}
		in := &instance{h: h, cfg: ic, man: m, settings: map[string]string{},
			log: log.With("plugin", ic.Name), kick: make(chan struct{}, 1)}
		in.link = opts.Links.New(linkstate.Options{Name: "plugin/" + ic.Name, Log: in.log,
			RetryMin: opts.Config.RestartMin, RetryMax: opts.Config.RestartMax})
		for _, s := range ic.Settings {
			k, v, _ := strings.Cut(s, "=")
			in.settings[strings.TrimSpace(k)] = v
		}
		in.labels = prometheus.Labels{"instance": ic.Name, "plugin": m.Name, "kind": m.Kind}
		h.insts = append(h.insts, in)
		h.byName[ic.Name] = in
	}
	for i, ic := range opts.Config.Instances {
		if p := h.byName[ic.Partitioner]; p != nil && p.man.Kind != sdk.KindPartitioner {
			probs = append(probs, fmt.Errorf("plugins.instances[%d].partitioner: instance %q runs plugin %s, a %s, not a partitioner", i, ic.Partitioner, p.man.Name, p.man.Kind))
		}
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	return h, nil
}

func names(ms []Manifest) string {
	if len(ms) == 0 {
		return "none"
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+" ("+m.Kind+")")
	}
	return strings.Join(s, ", ")
}

// Start runs every instance until ctx ends; wg tracks them.
func (h *Host) Start(ctx context.Context, wg *sync.WaitGroup) error {
	if len(h.insts) == 0 {
		return nil
	}
	if err := h.store.ensure(); err != nil {
		return err
	}
	cks, err := h.store.loadAll(ctx)
	if err != nil {
		return err
	}
	for _, in := range h.insts {
		in.ck = cks[in.cfg.Name]
		if in.ck == nil {
			in.ck = newCheckpoint()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.singletons == nil || in.man.Kind == sdk.KindPartitioner {
				in.supervise(ctx)
				return
			}
			h.singletons.RunService(ctx, "plugin/"+in.cfg.Name, func(ctx context.Context, epoch int64) {
				// Taken over (maybe from another node): what this node's
				// state topic holds for it now.
				if cks, err := h.store.loadAll(ctx); err == nil && cks[in.cfg.Name] != nil {
					in.ck = cks[in.cfg.Name]
				}
				in.log.Info("plugin instance runs on this node", "owner_epoch", epoch)
				in.supervise(ctx)
			})
		}()
	}
	return nil
}

// Status is one instance's state for GET /v1/status/plugins and tests; its
// JSON names are snake_case like every other katka endpoint's.
type Status struct {
	// Instance is the instance's name in plugins.instances.
	Instance string `json:"instance"`
	// Plugin is the manifest name the instance runs.
	Plugin string `json:"plugin"`
	// Kind is partitioner, processor, sink or source.
	Kind string `json:"kind"`
	// Up is true while a configured process serves the instance.
	Up bool `json:"up"`
	// PID is the running process's id (0 when down).
	PID int `json:"pid"`
	// Restarts counts the process's restarts since katka started.
	Restarts int `json:"restarts"`
	// LastError is the error that last stopped or failed the instance.
	LastError string `json:"last_error"`
}

// Status returns every instance's state.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.insts))
	for _, in := range h.insts {
		in.mu.Lock()
		s := Status{Instance: in.cfg.Name, Plugin: in.man.Name, Kind: in.man.Kind, Restarts: in.restarts, LastError: in.lastErr}
		if in.cur != nil {
			s.Up, s.PID = true, in.cur.pid
		}
		in.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// instance is one configured plugin instance and its supervisor.
type instance struct {
	h        *Host
	cfg      config.PluginInstance
	man      Manifest
	settings map[string]string
	log      *slog.Logger
	labels   prometheus.Labels
	ck       *checkpoint // committed positions; only the supervisor goroutine touches it
	rr       int32
	kick     chan struct{} // a caller timed the process out
	// link logs the process's state changes once each (stopped, back
	// after N s), not a line per restart.
	link *linkstate.Link

	mu       sync.Mutex
	cur      *proc
	restarts int
	lastErr  string
}

var (
	errExited  = errors.New("plugin process exited")
	errTimeout = errors.New("timed out")
)

// supervise runs the plugin, restarting it with capped exponential backoff.
func (in *instance) supervise(ctx context.Context) {
	backoff := in.h.cfg.RestartMin
	for {
		start := time.Now()
		err := in.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		in.mu.Lock()
		in.restarts++
		if err != nil {
			in.lastErr = err.Error()
		}
		in.mu.Unlock()
		in.h.m.restarts.With(in.labels).Inc()
		if time.Since(start) > 10*time.Second {
			backoff = in.h.cfg.RestartMin
		}
		if err == nil {
			err = errExited
		}
		in.link.Down(err) // one WARN when it stops, a reminder every 5 min while it keeps failing
		in.log.Debug("plugin stopped; restarting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, in.h.cfg.RestartMax)
	}
}

func (in *instance) setProc(p *proc) {
	in.mu.Lock()
	in.cur = p
	in.mu.Unlock()
	if p != nil {
		in.h.m.up.With(in.labels).Set(1)
	} else {
		in.h.m.up.With(in.labels).Set(0)
	}
}

// runOnce starts the process, configures it and runs its loop until it
// fails, exits or ctx ends; the process is always killed on return.
func (in *instance) runOnce(ctx context.Context) error {
	p, err := startProc(in.man, in.h.cfg.CallTimeout, in.log)
	if err != nil {
		reason := "start"
		if errors.Is(err, ErrChecksum) {
			reason = "checksum" // the error says so in the link's line
		}
		in.h.m.errors.With(withReason(in.labels, reason)).Inc()
		return err
	}
	defer p.kill()
	in.log.Debug("plugin started", "pid", p.pid, "path", in.man.Path(), "version", in.man.Version)
	req := &pb.ConfigureRequest{Instance: in.cfg.Name, Settings: in.settings}
	for k, v := range in.ck.state {
		req.State = append(req.State, &pb.StateEntry{Key: k, Value: v})
	}
	if err := in.call(ctx, p, "configure", func(cctx context.Context) error { return p.configure(cctx, req) }); err != nil {
		return err
	}
	in.setProc(p)
	defer in.setProc(nil)
	// Up (logged once: "link up", then "link back after N s") once the
	// process has run for stableAfter, as of its start.
	started := time.Now()
	stable := time.AfterFunc(in.h.stableAfter, func() {
		in.link.UpSince(started, "pid", p.pid, "path", in.man.Path(), "version", in.man.Version)
	})
	defer stable.Stop()
	select {
	case <-in.kick:
	default:
	}
	switch in.man.Kind {
	case sdk.KindPartitioner:
		return in.idle(ctx, p)
	case sdk.KindSink, sdk.KindProcessor:
		return in.consume(ctx, p)
	case sdk.KindSource:
		return in.readSource(ctx, p)
	}
	return fmt.Errorf("plugin %s: unknown kind %q", in.man.Name, in.man.Kind)
}

// call runs one plugin call under plugins.call_timeout, timing it. A timeout
// kills the process (it is restarted by the supervisor).
func (in *instance) call(ctx context.Context, p *proc, method string, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, in.h.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	err := f(cctx)
	in.h.m.callDuration.With(withMethod(in.labels, method)).Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	reason := "error"
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		reason = "timeout"
		in.log.Debug("plugin call timed out; killing it", "method", method, "timeout", in.h.cfg.CallTimeout) // the error says so
		p.kill()
		err = fmt.Errorf("plugin %s: %s: %w after %s", in.cfg.Name, method, errTimeout, in.h.cfg.CallTimeout)
	case p.exited() || status.Code(err) == codes.Unavailable:
		reason = "exited"
		err = fmt.Errorf("plugin %s: %s: %w (%v)", in.cfg.Name, method, errExited, err)
	default:
		err = fmt.Errorf("plugin %s: %s: %w", in.cfg.Name, method, err)
	}
	in.h.m.errors.With(withReason(in.labels, reason)).Inc()
	return err
}

func withReason(l prometheus.Labels, r string) prometheus.Labels {
	return prometheus.Labels{"instance": l["instance"], "plugin": l["plugin"], "kind": l["kind"], "reason": r}
}

func withMethod(l prometheus.Labels, m string) prometheus.Labels {
	return prometheus.Labels{"instance": l["instance"], "plugin": l["plugin"], "kind": l["kind"], "method": m}
}

// idle waits while a partitioner serves other instances' calls.
func (in *instance) idle(ctx context.Context, p *proc) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-in.kick:
			return fmt.Errorf("plugin %s: killed after a timed out call", in.cfg.Name)
		case <-t.C:
			if p.exited() {
				return errExited
			}
		}
	}
}
