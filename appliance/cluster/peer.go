package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ALPN protocols of the peer listener: one TLS port carries both.
const (
	alpnRaft = "katka-raft/1"
	alpnRPC  = "katka-rpc/1"
)

// Peer listener limits: a stranger can hold a handshake only this long, and an
// RPC message is small.
const (
	handshakeTimeout = 5 * time.Second
	rpcTimeout       = 5 * time.Second
	maxRPCBytes      = 1 << 20
	maxLoggedRejects = 1024
	// maxPeerConns bounds the peer listener's open connections (raft pools
	// 3 per peer, RPCs are short); beyond it a connection is closed at once.
	maxPeerConns = 256
)

// peerListener accepts mutual-TLS connections and hands each to raft or to
// the RPC handler by its ALPN protocol.
type peerListener struct {
	ln   net.Listener
	cred *Credential
	log  *slog.Logger
	rpc  func(ctx context.Context, from int32, req rpcRequest) rpcResponse
	// forward serves a forward stream (forward.go) on an RPC connection.
	forward func(from int32, tc *tls.Conn, r io.Reader)
	// starting is set while the node's raft is not up yet: RPCs are
	// refused then (their handlers read the raft state).
	starting atomic.Bool
	// heartbeat serves a heartbeat stream (liveness.go).
	heartbeat func(from int32, tc *tls.Conn, r io.Reader)
	// replicate serves a replica stream (replica_serve.go).
	replicate func(from int32, tc *tls.Conn, r io.Reader)
	raftC     chan net.Conn
	slots     chan struct{} // one per open connection, at most maxPeerConns
	done      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup

	mu       sync.Mutex
	rejected map[string]bool // remote IPs already logged
	onReject func()
}

// listenPeers listens on addr, or serves ln when it is not nil.
func listenPeers(addr string, ln net.Listener, cred *Credential, log *slog.Logger) (*peerListener, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("cell peer listener: %w", err)
		}
	}
	return &peerListener{
		ln: ln, cred: cred, log: log,
		raftC: make(chan net.Conn), slots: make(chan struct{}, maxPeerConns), done: make(chan struct{}), rejected: map[string]bool{},
	}, nil
}

// start accepts connections in the background until close.
func (p *peerListener) start() {
	p.wg.Add(1)
	go p.serve()
}

func (p *peerListener) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Error("cell peer accept", "err", err)
			return
		}
		select {
		case p.slots <- struct{}{}:
		default:
			p.reject(c.RemoteAddr(), fmt.Errorf("%d peer connections open", cap(p.slots)))
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(&slotConn{Conn: c, free: func() { <-p.slots }})
		}()
	}
}

func (p *peerListener) handle(raw net.Conn) {
	tc := tls.Server(raw, p.cred.ServerTLS(alpnRaft, alpnRPC))
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		p.reject(raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	from, err := PeerNodeID(st)
	if err != nil {
		p.reject(raw.RemoteAddr(), err)
		tc.Close()
		return
	}
	switch st.NegotiatedProtocol {
	case alpnRaft:
		select {
		case p.raftC <- tc:
		case <-p.done:
			tc.Close()
		}
	case alpnRPC:
		defer tc.Close()
		if p.starting.Load() {
			return // raft is not up yet: the caller retries
		}
		tc.SetDeadline(time.Now().Add(rpcTimeout))
		var req rpcRequest
		dec := json.NewDecoder(io.LimitReader(tc, maxRPCBytes))
		if err := dec.Decode(&req); err != nil {
			p.log.Debug("cell rpc: bad request", "from", from, "err", err)
			return
		}
		if req.Op == opForward && p.forward != nil {
			tc.SetDeadline(time.Time{})
			p.forward(from, tc, io.MultiReader(dec.Buffered(), tc))
			return
		}
		if req.Op == opHeartbeat && p.heartbeat != nil {
			tc.SetDeadline(time.Time{})
			p.heartbeat(from, tc, io.MultiReader(dec.Buffered(), tc))
			return
		}
		if req.Op == opReplicate && p.replicate != nil {
			tc.SetDeadline(time.Time{})
			p.replicate(from, tc, io.MultiReader(dec.Buffered(), tc))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp := p.rpc(ctx, from, req)
		cancel()
		json.NewEncoder(tc).Encode(resp)
	default:
		tc.Close()
	}
}

// reject logs a refused peer once per remote IP (the set is bounded).
func (p *peerListener) reject(addr net.Addr, err error) {
	host, _, _ := net.SplitHostPort(addr.String())
	p.mu.Lock()
	first := !p.rejected[host] && len(p.rejected) < maxLoggedRejects
	if first {
		p.rejected[host] = true
	}
	f := p.onReject
	p.mu.Unlock()
	if f != nil {
		f()
	}
	if first {
		p.log.Warn("cell peer refused (not a member of this cell)", "remote", addr.String(), "err", err)
	}
}

func (p *peerListener) close() {
	p.once.Do(func() {
		close(p.done)
		p.ln.Close()
	})
	p.wg.Wait()
}

// slotConn frees its listener slot once, when closed.
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.free)
	return c.Conn.Close()
}

// dial opens a mutual-TLS connection to a peer for one ALPN protocol.
func dialPeer(ctx context.Context, cred *Credential, addr, proto string) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: handshakeTimeout}, Config: cred.ClientTLS(proto)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if tc.ConnectionState().NegotiatedProtocol != proto {
		tc.Close()
		return nil, fmt.Errorf("peer %s does not speak %s", addr, proto)
	}
	return tc, nil
}

// rpcRequest is one peer RPC; Op selects the handler.
type rpcRequest struct {
	// Op is hello or apply.
	Op string `json:"op"`
	// From is the caller's own announcement (hello).
	From *Announcement `json:"from,omitempty"`
	// Command is a controller command to apply on the leader (apply).
	Command *Command `json:"command,omitempty"`
	// Read is a read of a partition from its leader (services_read.go).
	Read *ReadRequest `json:"read,omitempty"`
	// Kind and Payload are an upper layer's call (call, peer_call.go).
	Kind    string          `json:"kind,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// rpcResponse answers an rpcRequest.
type rpcResponse struct {
	Error string `json:"error,omitempty"`
	// Self is the answering node's announcement (hello).
	Self *Announcement `json:"self,omitempty"`
	// Result is the applied command's result (apply).
	Result json.RawMessage `json:"result,omitempty"`
}

// call makes one RPC to the peer at addr.
func call(ctx context.Context, cred *Credential, addr string, req rpcRequest) (rpcResponse, int32, error) {
	tc, err := dialPeer(ctx, cred, addr, alpnRPC)
	if err != nil {
		return rpcResponse{}, 0, err
	}
	defer tc.Close()
	id, err := PeerNodeID(tc.ConnectionState())
	if err != nil {
		return rpcResponse{}, 0, err
	}
	dl := time.Now().Add(rpcTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	tc.SetDeadline(dl)
	if err := json.NewEncoder(tc).Encode(req); err != nil {
		return rpcResponse{}, id, fmt.Errorf("rpc %s to %s: %w", req.Op, addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(tc, maxRPCBytes)).Decode(&resp); err != nil {
		return rpcResponse{}, id, fmt.Errorf("rpc %s to %s: %w", req.Op, addr, err)
	}
	if resp.Error != "" {
		return resp, id, fmt.Errorf("rpc %s to %s: %s", req.Op, addr, resp.Error)
	}
	return resp, id, nil
}

// raftLayer is hashicorp/raft's StreamLayer over the peer listener.
type raftLayer struct {
	p    *peerListener
	cred *Credential
	adv  net.Addr
}

// Accept returns the next raft connection from a peer.
func (r *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-r.p.raftC:
		return c, nil
	case <-r.p.done:
		return nil, net.ErrClosed
	}
}

// Close is a no-op: the peer listener is closed by the node.
func (r *raftLayer) Close() error { return nil }

// Addr is the advertised peer address (what other nodes dial).
func (r *raftLayer) Addr() net.Addr { return r.adv }

// Dial opens a raft connection to a peer.
func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialPeer(ctx, r.cred, string(addr), alpnRaft)
}

// tcpAddr is a net.Addr for an advertised host:port string.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
