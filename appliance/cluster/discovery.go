package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
)

// Discovery finds neighbouring nodes. It moves opaque TXT strings only: the
// cell signs and verifies them, so another implementation (a fork's, or a
// test's) needs to know nothing about the cell's credential.
type Discovery interface {
	// Announce starts announcing (or replaces what is announced): the instance
	// name, the peer port and IPs, and the TXT strings.
	Announce(instance string, ip string, port int, txt []string) error
	// Browse runs until ctx ends, calling found for every answer it receives,
	// again and again for the same peer (that is how peers stay fresh).
	Browse(ctx context.Context, found func(instance string, txt []string))
	// Close stops announcing.
	Close() error
}

// mdnsService is the DNS-SD service type katka nodes announce.
const mdnsService = "_katka._tcp"

// MDNS is Discovery over multicast DNS with github.com/grandcat/zeroconf. It
// works around the library's known gaps: a browse stops querying after its
// first answer and misses late ones, and a resolver cannot be reused, so every
// round is a fresh resolver lasting Round; the host name is our own (the
// machine's is the same in every network namespace); the interfaces are
// explicit. Expiry is the caller's: the library reports no goodbyes.
type MDNS struct {
	ifaces []net.Interface
	round  time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	server *zeroconf.Server
	cur    announced
}

type announced struct {
	instance, ip string
	port         int
}

// NewMDNS makes an mDNS Discovery on the named interfaces (all multicast
// ones when names is empty); each browse round lasts round.
func NewMDNS(names []string, round time.Duration, log *slog.Logger) (*MDNS, error) {
	var ifaces []net.Interface
	for _, n := range names {
		ifc, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("cell.interfaces: %q: %w", n, err)
		}
		if ifc.Flags&net.FlagMulticast == 0 {
			return nil, fmt.Errorf("cell.interfaces: %q does not support multicast", n)
		}
		ifaces = append(ifaces, *ifc)
	}
	return &MDNS{ifaces: ifaces, round: round, log: log}, nil
}

// Announce registers the service, or updates its TXT strings when only they
// changed; a changed address or port re-registers.
func (m *MDNS) Announce(instance, ip string, port int, txt []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := announced{instance, ip, port}
	if m.server != nil && m.cur == next {
		m.server.SetText(txt)
		return nil
	}
	if m.server != nil {
		m.server.Shutdown()
		m.server = nil
	}
	host := instance // unique per node, so A records never mix between nodes
	s, err := zeroconf.RegisterProxy(instance, mdnsService, "local.", port, host, []string{ip}, txt, m.ifaces)
	if err != nil {
		return fmt.Errorf("mdns announce: %w", err)
	}
	s.TTL(uint32(max(m.round*4, 10*time.Second) / time.Second))
	m.server, m.cur = s, next
	return nil
}

// Browse runs browse rounds until ctx ends.
func (m *MDNS) Browse(ctx context.Context, found func(instance string, txt []string)) {
	for ctx.Err() == nil {
		start := time.Now()
		if err := m.browseRound(ctx, found); err != nil {
			m.log.Warn("mdns browse failed", "err", err)
		}
		// A failed round (no interface up yet) must not spin.
		if wait := m.round - time.Since(start); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

func (m *MDNS) browseRound(ctx context.Context, found func(string, []string)) error {
	opts := []zeroconf.ClientOption{zeroconf.SelectIPTraffic(zeroconf.IPv4)}
	if len(m.ifaces) > 0 {
		opts = append(opts, zeroconf.SelectIfaces(slices.Clone(m.ifaces)))
	}
	r, err := zeroconf.NewResolver(opts...)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, m.round)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 16)
	if err := r.Browse(rctx, mdnsService, "local.", entries); err != nil {
		return err
	}
	for e := range entries { // closed when rctx ends
		found(e.Instance, e.Text)
	}
	return nil
}

// Close stops announcing.
func (m *MDNS) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.server != nil {
		m.server.Shutdown()
		m.server = nil
	}
	return nil
}
