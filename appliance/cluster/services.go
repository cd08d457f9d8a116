package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Singleton services (issue 16 point 7): the sync link of a site and each
// plugin instance run on exactly one live node of the cell. The controller
// keeps an owner and an owner epoch per service name (Metadata.Services);
// a node that wants to run a service claims it when it has no owner or its
// owner is fenced, removed or gone (claim_service, a compare in the FSM, so
// of several simultaneous claims the first committed wins); the owner runs
// it while its own copy of the metadata names it and it holds its lease (a
// heartbeat acknowledged by the controller leader within the session timeout
// less a margin), and gives it up (release_service) when it stops cleanly.
// The controller's fencing decides death (liveness.go): a fenced owner's
// services are claimed by the next node that wants them. Owners stay: a node
// that comes back does not take its services back.
const (
	opClaimService   = "claim_service"
	opReleaseService = "release_service"
	// serviceCheckEvery is how often a node looks at its services without a
	// metadata change (its lease runs out without one).
	serviceCheckEvery = 100 * time.Millisecond
	// serviceClaimRetry is the pause after a failed claim.
	serviceClaimRetry = 250 * time.Millisecond
	// maxServiceName bounds a service name.
	maxServiceName = 256
)

// ErrServiceOwned refuses a claim on a service another live node owns.
var ErrServiceOwned = errors.New("service owned by another live node")

// ServiceOwner is the node that runs a singleton service.
type ServiceOwner struct {
	// Node is the owning node (-1: released, no owner).
	Node int32 `json:"node"`
	// Epoch counts the service's owners: every claim raises it.
	Epoch int64 `json:"epoch"`
	// Since is when the owner claimed it (unix ms, as proposed).
	Since int64 `json:"since"`
}

// ownerLive reports whether a service's owner may keep it: registered, not
// removed, not fenced. Callers hold f.mu.
func (f *fsm) ownerLive(id int32) bool {
	if id < 0 {
		return false
	}
	if _, ok := f.md.Nodes[id]; !ok {
		return false
	}
	if _, ok := f.md.Removed[id]; ok {
		return false
	}
	_, fenced := f.md.Fenced[id]
	return !fenced
}

// applyService applies claim_service and release_service. Callers hold f.mu
// (fsm.apply).
func (f *fsm) applyService(c Command) error {
	if c.Service == "" || len(c.Service) > maxServiceName {
		return fmt.Errorf("%s: service name of %d bytes (1..%d)", c.Op, len(c.Service), maxServiceName)
	}
	cur, ok := f.md.Services[c.Service]
	if !ok {
		cur = ServiceOwner{Node: -1}
	}
	switch c.Op {
	case opClaimService:
		if cur.Node == c.NodeID && f.ownerLive(c.NodeID) {
			return nil // already ours
		}
		if f.ownerLive(cur.Node) {
			return fmt.Errorf("%w: %s is node %d's (epoch %d)", ErrServiceOwned, c.Service, cur.Node, cur.Epoch)
		}
		if !f.ownerLive(c.NodeID) {
			return fmt.Errorf("%w: node %d may not own %s", ErrIneligibleReplica, c.NodeID, c.Service)
		}
		if f.md.Services == nil {
			f.md.Services = map[string]ServiceOwner{}
		}
		f.md.Services[c.Service] = ServiceOwner{Node: c.NodeID, Epoch: cur.Epoch + 1, Since: c.At}
	case opReleaseService:
		if cur.Node != c.NodeID || cur.Epoch != c.Epoch {
			return nil // someone else's now: nothing to give up
		}
		cur.Node = -1
		f.md.Services[c.Service] = cur
	}
	return nil
}

// service returns a service's owner and whether node self may claim it now
// (its owner is not live and self is).
func (f *fsm) service(name string, self int32) (owner ServiceOwner, claimable bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	owner, ok := f.md.Services[name]
	if !ok {
		owner = ServiceOwner{Node: -1}
	}
	live := f.ownerLive(owner.Node)
	return owner, !live && f.ownerLive(self)
}

// ownsService reports whether this node's copy of the metadata names it the
// live owner of a service, and the owner epoch.
func (f *fsm) ownsService(name string, self int32) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.md.Services[name]
	return o.Epoch, ok && o.Node == self && f.ownerLive(self)
}

// holdsLease reports whether this node may act as a service owner now: it
// leads the controller (with every committed entry applied), or the
// controller leader acknowledged a heartbeat it sent within the session
// timeout less two heartbeat intervals and did not have it fenced then (a
// node coming back from a cut has applied its fencing before that, and with
// it sees itself fenced until it has applied any new owner's claim too, so
// a stale copy of the metadata never starts a service again). The
// controller fences a node a session timeout after it last received a
// heartbeat, which is after the node sent it, so an owner cut off from the
// controller stops its services before it is fenced and another node may
// take them (a process paused by SIGSTOP checks again only when it
// resumes: the sync link relies on Kafka's producer fencing for that).
func (n *Node) holdsLease() bool {
	now := time.Now()
	if n.raft.State() == raft.Leader {
		// A leader steps down within its lease timeout when cut off; a new
		// one acts once its copy of the metadata has every committed entry.
		if n.raft.AppliedIndex() < n.raft.CommitIndex() {
			return false
		}
		n.live.beatSent.Store(now.UnixNano())
		return true
	}
	lease := n.opts.Cell.SessionTimeout - 2*n.opts.Cell.HeartbeatInterval
	return now.Sub(time.Unix(0, n.live.beatSent.Load())) < lease
}

// serviceError gives a claim's error forwarded from the controller leader
// its sentinel back.
func serviceError(err error) error {
	if err != nil && !errors.Is(err, ErrServiceOwned) && strings.Contains(err.Error(), ErrServiceOwned.Error()) {
		return fmt.Errorf("%w (%v)", ErrServiceOwned, err)
	}
	return remoteError(err)
}

// ServiceOwner returns the owner of a singleton service as this node's copy
// of the metadata says (Node -1: none).
func (n *Node) ServiceOwner(name string) ServiceOwner {
	o, _ := n.fsm.service(name, n.cred.NodeID)
	return o
}

// RunService runs fn while this node owns the singleton service name, and
// claims it whenever it has no live owner; it returns when ctx ends, after
// fn returned and the service was released (so another node takes it at
// once). fn's context is cancelled when this node loses the service (fenced,
// its lease ran out, another node owns it); RunService waits for fn to
// return before it claims again, so fn never runs twice on one node. epoch is
// the owner epoch this node holds the service in.
func (n *Node) RunService(ctx context.Context, name string, fn func(ctx context.Context, epoch int64)) {
	self := n.cred.NodeID
	log := n.log.With("service", name)
	var (
		cancel  context.CancelFunc
		done    chan struct{}
		running int64 // owner epoch fn runs in
		retryAt time.Time
	)
	stop := func(why string) {
		if cancel == nil {
			return
		}
		cancel()
		<-done
		cancel, done = nil, nil
		log.Info("cell: service stopped on this node", "epoch", running, "why", why)
	}
	tick := time.NewTicker(serviceCheckEvery)
	defer tick.Stop()
	for {
		changed := n.ops.fsm.changes()
		epoch, owns := n.fsm.ownsService(name, self)
		lease := n.holdsLease()
		switch {
		case owns && lease && cancel != nil && epoch != running:
			stop("owner epoch changed")
			fallthrough
		case owns && lease && cancel == nil:
			var cctx context.Context
			cctx, cancel = context.WithCancel(ctx)
			done, running = make(chan struct{}), epoch
			log.Info("cell: service runs on this node", "epoch", epoch)
			go func(c chan struct{}) {
				defer close(c)
				fn(cctx, epoch)
			}(done)
		case !owns && cancel != nil:
			stop("another node owns it, or this node is fenced")
		case owns && !lease && cancel != nil:
			stop("lease lost: no heartbeat acknowledged by the controller leader")
		}
		if _, claimable := n.fsm.service(name, self); claimable && lease && cancel == nil && time.Now().After(retryAt) {
			cctx, c := context.WithTimeout(ctx, 5*time.Second)
			err := serviceError(n.Apply(cctx, Command{Op: opClaimService, Service: name, NodeID: self, At: time.Now().UnixMilli()}))
			c()
			if err != nil && !errors.Is(err, ErrServiceOwned) && ctx.Err() == nil {
				log.Debug("cell: service claim failed", "err", err)
				retryAt = time.Now().Add(serviceClaimRetry)
			}
			if err == nil || errors.Is(err, ErrServiceOwned) {
				// Wait for this node's copy to show the result.
				n.awaitAppliedFor(ctx, 2*time.Second, func(md *Metadata) bool {
					o, ok := md.Services[name]
					return ok && o.Node >= 0
				})
			}
			continue
		}
		select {
		case <-ctx.Done():
			stop("shutting down")
			if running > 0 {
				if _, still := n.fsm.ownsService(name, self); still {
					rctx, c := context.WithTimeout(context.Background(), 2*time.Second)
					if err := n.Apply(rctx, Command{Op: opReleaseService, Service: name, NodeID: self, Epoch: running}); err != nil {
						log.Warn("cell: service not released; another node takes it once this node is fenced", "err", err)
					}
					c()
				}
			}
			return
		case <-changed:
		case <-tick.C:
		case <-n.ctx.Done():
			stop("cell stopping")
			<-ctx.Done()
			return
		}
	}
}
