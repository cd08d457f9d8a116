// Package mirror is katka's link to a central Kafka cluster: the uplink mirrors
// local topics to it exactly once (Kafka transactions carrying the records and a
// checkpoint together, read back at start), the downlink mirrors central topics
// into local ones exactly once (the central offset travels in a header of each
// local record and is read back at start). Both only use the broker's
// in-process API, and the uplink only reads local logs, so a slow or dead
// central cluster never slows local producers. See sync/README.md.
package mirror

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// Service runs the configured links and keeps their status.
type Service struct {
	cfg        config.Sync
	log        *slog.Logger
	statusPath string
	up         *Uplink
	down       *Downlink
}

// New prepares the links of cfg (which must be valid and enabled) on b. Metrics
// are registered on reg when it is not nil; the status is written every second
// to statusPath when it is not empty. The links' state changes (lost, back
// after N s) are logged once each and kept in links (which may be nil).
func New(b *broker.Broker, cfg config.Sync, statusPath string, reg prometheus.Registerer, links *linkstate.Registry, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "sync")
	opts, err := clientOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.SASL.Mechanism == "plain" && !cfg.TLS.Enabled {
		log.Warn("sync.sasl.mechanism plain without sync.tls: the password crosses the network in clear text")
	}
	s := &Service{cfg: cfg, log: log, statusPath: statusPath}
	m := newMetrics(reg)
	if len(cfg.Uplink) > 0 {
		if s.up, err = newUplink(b, cfg, opts, m, newLink(links, "uplink", cfg, log), log); err != nil {
			return nil, err
		}
	}
	if len(cfg.Downlink) > 0 {
		s.down = newDownlink(b, cfg, opts, m, newLink(links, "downlink", cfg, log), log)
	}
	return s, nil
}

// SetRemote gives the links a reader of partitions at their leaders (in a
// cell: cluster.Node): the uplink mirrors the partitions this node holds no
// replica of through it (without one they are not mirrored from this node),
// the downlink reads its last written positions back through it where this
// node does not lead. Call it before Run.
func (s *Service) SetRemote(r Remote) {
	if s.up != nil {
		s.up.remote = r
	}
	if s.down != nil {
		s.down.remote = r
	}
}

// newLink is the state of one link (sync/uplink, sync/downlink), logged with
// the service's logger.
func newLink(links *linkstate.Registry, name string, cfg config.Sync, log *slog.Logger) *linkstate.Link {
	return links.New(linkstate.Options{Name: "sync/" + name, Log: log, RetryMin: cfg.BackoffMin, RetryMax: cfg.BackoffMax})
}

// Run runs the links until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if s.up != nil {
		wg.Go(func() { s.up.Run(ctx) })
	}
	if s.down != nil {
		wg.Go(func() { s.down.Run(ctx) })
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			s.refresh(context.Background())
			return
		case <-t.C:
		}
	}
}

// refresh recomputes the status and writes the status file.
func (s *Service) refresh(ctx context.Context) {
	if s.up != nil {
		s.up.refreshStatus(ctx)
	}
	if s.down != nil {
		s.down.refreshStatus()
	}
	if s.statusPath != "" {
		if err := WriteStatusFile(s.statusPath, s.Status()); err != nil {
			s.log.Warn("sync status file", "err", err)
		}
	}
}

// Status returns a snapshot of both links (for an HTTP endpoint).
func (s *Service) Status() Status {
	st := Status{Site: s.cfg.Site, Updated: time.Now().UTC()}
	if s.up != nil {
		st.Links = append(st.Links, withLink(s.up.state.snapshot(), s.up.link))
	}
	if s.down != nil {
		st.Links = append(st.Links, withLink(s.down.state.snapshot(), s.down.link))
	}
	return st
}

// withLink adds the logged state of l to ls.
func withLink(ls LinkStatus, l *linkstate.Link) LinkStatus {
	s := l.Snapshot()
	ls.State, ls.StateSince, ls.FailedAttempts = s.State.String(), s.Since, s.FailedAttempts
	return ls
}

func sortParts(ps []PartitionStatus) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Topic != ps[j].Topic {
			return ps[i].Topic < ps[j].Topic
		}
		return ps[i].Partition < ps[j].Partition
	})
}

// Ping checks that the central cluster answers with the link's settings (for
// `katka sync status --check`): TLS handshake, SASL login (a rejected one
// wraps ErrAuthFailed) and one request.
func Ping(ctx context.Context, cfg config.Sync) error {
	opts, err := clientOpts(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	_, err = probe(ctx, cfg, opts)
	return err
}
