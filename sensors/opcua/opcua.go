// Package opcua is katka's OPC UA input: it subscribes to data changes of
// nodes on OPC UA servers (github.com/gopcua/opcua) with monitored items, and
// writes one JSON record per change, keyed server/node.
package opcua

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

func init() { sensors.Add("opcua", factory) }

// factory builds one input per server when the input is enabled and ensures its topic.
func factory(cfg config.Sensors, env sensors.Env) ([]sensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	if _, err := env.Broker.EnsureTopic(c.Topic, c.Partitions); err != nil {
		return nil, fmt.Errorf("topic %s: %w", c.Topic, err)
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	var out []sensors.Input
	for i := range c.Servers {
		in, err := New(*c, i, w, env.Log)
		if err != nil {
			return nil, fmt.Errorf("servers[%d]: %w", i, err)
		}
		out = append(out, in)
	}
	return out, nil
}

// node is one monitored item.
type node struct {
	id       *ua.NodeID          // nil until a browse path is resolved
	path     []*ua.QualifiedName // the browse path, if configured by one
	idText   string              // node id or browse path, for logs
	key      []byte              // server/name
	jsonName []byte
	jsonID   []byte
	missing  bool // the browse path did not resolve (logged once until it does)
}

// Input is one OPC UA server connection with one subscription.
type Input struct {
	cfg   Config
	srv   ServerConfig
	nodes []node // by client handle
	w     *sensors.Writer
	log   *slog.Logger

	link linkState
}

// linkState is what the log said about the link, so that each change is
// logged once: lost (with its cause, and again only when the cause changes
// kind), then back (with how long it was down); never once per retry.
type linkState struct {
	up        bool      // the subscription is running
	wasUp     bool      // it ran once (a later failure is a lost link)
	downSince time.Time // first failure of the current outage
	kind      string    // kind of the cause last logged in this outage
}

// New checks the server's config and returns its input; a nil log discards logs.
func New(cfg Config, i int, w *sensors.Writer, log *slog.Logger) (*Input, error) {
	if w == nil {
		return nil, errors.New("writer is nil")
	}
	if i < 0 || i >= len(cfg.Servers) {
		return nil, fmt.Errorf("no server %d", i)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := cfg.Servers[i]
	in := &Input{cfg: cfg, srv: s, w: w, log: log.With("sensor", "opcua", "server", s.Name)}
	for j, n := range s.Nodes {
		nd := node{idText: n.NodeID, key: []byte(s.Name + "/" + n.key()), jsonName: strconv.AppendQuote(nil, n.key())}
		if n.BrowsePath != "" {
			path, err := ParseBrowsePath(n.BrowsePath)
			if err != nil {
				return nil, fmt.Errorf("nodes[%d].browse_path: %q %w", j, n.BrowsePath, err)
			}
			nd.path, nd.idText = path, n.BrowsePath
		} else {
			id, err := ua.ParseNodeID(n.NodeID)
			if err != nil {
				return nil, fmt.Errorf("nodes[%d].node_id: %w", j, err)
			}
			nd.id, nd.jsonID = id, strconv.AppendQuote(nil, n.NodeID)
		}
		in.nodes = append(in.nodes, nd)
	}
	if in.cfg.BatchMaxRecords < 1 {
		in.cfg.BatchMaxRecords = 1
	}
	return in, nil
}

// Reconnect backoff: katka connects anew after a failure at once, then
// waiting twice as long each time up to retryMax, so that a healed link or a
// restarted server is found within retryMax; a refused identity or
// certificate waits up to authRetryMax (a server may lock an account that
// keeps failing).
const (
	retryMin     = 200 * time.Millisecond
	retryMax     = 2 * time.Second
	authRetryMax = 30 * time.Second
)

// Run connects, subscribes and writes the changes until ctx is done; a lost
// connection is re-established (by the client, which transfers or re-creates
// the subscription) and, when the client gives up, by Run with backoff.
func (in *Input) Run(ctx context.Context) error {
	up := connected.WithLabelValues(in.srv.Name)
	defer up.Set(0)
	wait := retryMin
	for ctx.Err() == nil {
		ran, err := in.session(ctx, up)
		if ctx.Err() != nil {
			return nil
		}
		if ran {
			wait = 0 // the subscription ran until now: connect anew at once
		}
		limit := retryMax
		if in.lost(err) == errAuth {
			limit = authRetryMax
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(max(2*wait, retryMin), limit)
	}
	return nil
}

// kindOf classifies a connection error for katka_opcua_errors_total.
func kindOf(err error) string {
	var se subscribeError
	if errors.As(err, &se) {
		return errSubscribe
	}
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		switch sc {
		case ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid, ua.StatusBadIdentityTokenRejected,
			ua.StatusBadCertificateUntrusted, ua.StatusBadCertificateInvalid, ua.StatusBadSecurityChecksFailed,
			ua.StatusBadCertificateRevoked, ua.StatusBadCertificateTimeInvalid, ua.StatusBadCertificateURIInvalid,
			ua.StatusBadCertificateUseNotAllowed, ua.StatusBadCertificateIssuerRevocationUnknown,
			ua.StatusBadCertificateRevocationUnknown, ua.StatusBadUserSignatureInvalid:
			return errAuth
		}
	}
	return errConnect
}

// lost counts a failure of the link by kind and logs it when it starts an
// outage or changes its kind; it returns the kind.
func (in *Input) lost(err error) string {
	kind := kindOf(err)
	errorsTotal.WithLabelValues(in.srv.Name, kind).Inc()
	l := &in.link
	first := l.up || l.downSince.IsZero()
	if first {
		l.up, l.downSince = false, time.Now()
	} else if kind == l.kind {
		return kind // the same outage, the same cause: counted, not logged
	}
	l.kind = kind
	switch {
	case kind == errAuth:
		in.log.Error("OPC UA server refused katka's identity or certificate; check auth, username, password, cert_file (katka keeps retrying; the next line says when it is back)",
			"endpoint", in.srv.Endpoint, "err", err)
	case l.wasUp && first:
		in.log.Warn("OPC UA link lost; reconnecting (the next line says when it is back)", "endpoint", in.srv.Endpoint, "kind", kind, "err", err)
	default:
		in.log.Error("OPC UA connection failed; retrying (the next line says when it is up)", "endpoint", in.srv.Endpoint, "kind", kind, "err", err)
	}
	return kind
}

// back marks the link up and logs it once: subscribed, or back after an outage.
func (in *Input) back(how string) {
	l := &in.link
	if l.up {
		return
	}
	switch {
	case l.wasUp:
		in.log.Info("OPC UA link back", "endpoint", in.srv.Endpoint, "after", time.Since(l.downSince).Round(time.Millisecond).String(), "how", how)
	case !l.downSince.IsZero():
		in.log.Info("OPC UA link up: subscribed", "endpoint", in.srv.Endpoint, "after", time.Since(l.downSince).Round(time.Millisecond).String(),
			"nodes", len(in.nodes), "policy", in.srv.SecurityPolicy, "mode", in.srv.SecurityMode, "auth", in.srv.Auth)
	default:
		in.log.Info("subscribed", "endpoint", in.srv.Endpoint, "nodes", len(in.nodes), "policy", in.srv.SecurityPolicy, "mode", in.srv.SecurityMode, "auth", in.srv.Auth)
	}
	*l = linkState{up: true, wasUp: true}
}

// subscribeError marks a failure to subscribe after the session was open.
type subscribeError struct{ error }

// clientOptions are the gopcua options of the server's security and identity.
func (in *Input) clientOptions(ctx context.Context) ([]opcua.Option, error) {
	s := in.srv
	opts := []opcua.Option{
		opcua.AutoReconnect(true),
		opcua.ReconnectInterval(time.Second),
		opcua.RequestTimeout(5 * time.Second),
		opcua.DialTimeout(5 * time.Second),
		opcua.SessionTimeout(time.Minute),
	}
	token := ua.UserTokenTypeAnonymous
	switch s.Auth {
	case "username":
		token = ua.UserTokenTypeUserName
	case "certificate":
		token = ua.UserTokenTypeCertificate
	}
	var (
		idCert []byte
		idKey  *rsa.PrivateKey
	)
	if s.CertFile != "" {
		cert, key, err := loadKeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, err
		}
		idCert, idKey = cert, key
		// Certificate also sets the application URI katka announces to the
		// one in the certificate, as servers check.
		opts = append(opts, opcua.Certificate(cert), opcua.PrivateKey(key))
	}
	if s.Auth == "certificate" && s.IdentityCertFile != "" {
		cert, key, err := loadKeyPair(s.IdentityCertFile, s.IdentityKeyFile)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		idCert, idKey = cert, key
	}
	eps, err := opcua.GetEndpoints(ctx, s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	mode := ua.MessageSecurityModeFromString(s.SecurityMode)
	ep, err := opcua.SelectEndpoint(eps, s.SecurityPolicy, mode)
	switch {
	case err == nil:
		opts = append(opts, opcua.SecurityFromEndpoint(ep, token))
	case s.SecurityPolicy == "None" && s.Auth == "anonymous":
		// The server lists no endpoint under the URL katka dialled (behind a
		// port forward, say); policy None needs nothing from the list.
		opts = append(opts, opcua.SecurityPolicy("None"), opcua.SecurityModeString("None"))
	default:
		return nil, fmt.Errorf("the server offers no endpoint with policy %s and mode %s: %w", s.SecurityPolicy, s.SecurityMode, err)
	}
	switch s.Auth {
	case "username":
		opts = append(opts, opcua.AuthUsername(s.Username, s.Password))
	case "certificate":
		// The identity token is signed with the certificate's key (proof of possession).
		opts = append(opts, opcua.AuthCertificate(idCert), opcua.AuthPrivateKey(idKey))
	default:
		opts = append(opts, opcua.AuthAnonymous())
	}
	return opts, nil
}

// loadKeyPair reads an application certificate and its RSA key, each PEM or DER.
func loadKeyPair(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	der := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if blk, _ := pem.Decode(b); blk != nil {
			return blk.Bytes, nil
		}
		return b, nil
	}
	cert, err := der(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cert_file: %w", err)
	}
	if _, err := x509.ParseCertificate(cert); err != nil {
		return nil, nil, fmt.Errorf("cert_file %s: %w", certFile, err)
	}
	kb, err := der(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("key_file: %w", err)
	}
	if k, err := x509.ParsePKCS1PrivateKey(kb); err == nil {
		return cert, k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("key_file %s: not an RSA key in PKCS#1 or PKCS#8: %w", keyFile, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("key_file %s: not an RSA key (OPC UA needs RSA)", keyFile)
	}
	return cert, rk, nil
}

// connectTimeout bounds one connection attempt (endpoints, secure channel, session).
const connectTimeout = 10 * time.Second

// session runs one client until it is closed for good or ctx is done; ran
// tells whether it got as far as subscribing.
func (in *Input) session(ctx context.Context, up interface{ Set(float64) }) (ran bool, err error) {
	// A connection attempt into a dead link would wait for ever.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	opts, err := in.clientOptions(cctx)
	if err != nil {
		return false, err
	}
	c, err := opcua.NewClient(in.srv.Endpoint, opts...)
	if err != nil {
		return false, err
	}
	if err := c.Connect(cctx); err != nil {
		return false, err
	}
	var sub *opcua.Subscription
	defer func() {
		// On a dead link the goodbye would wait for its request timeout.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if sub != nil {
			// Deleted first: the server then answers the publish requests
			// still open with BadNoSubscription, which the client ignores;
			// closing the session first makes them fail with
			// BadSessionClosed, and the client would start reconnecting
			// while it is being closed.
			sub.Cancel(cctx)
		}
		c.Close(cctx)
	}()
	if err := in.resolve(ctx, c); err != nil {
		return false, err
	}
	notifs := make(chan *opcua.PublishNotificationData, 256)
	sub, err = c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: in.srv.PublishInterval}, notifs)
	if err != nil {
		return false, subscribeError{fmt.Errorf("subscribe: %w", err)}
	}
	if err := in.monitor(ctx, sub); err != nil {
		return false, err
	}
	subscribes.WithLabelValues(in.srv.Name).Inc()
	up.Set(1)
	in.back("connected anew and subscribed")
	defer up.Set(0)
	return true, in.writeLoop(ctx, c, notifs, up)
}

// resolve finds the node ids of the nodes configured by browse path, from the
// Objects folder, 1000 paths per request. A path that does not resolve is
// counted as an item error and logged once until it resolves; its node is
// not monitored.
func (in *Input) resolve(ctx context.Context, c *opcua.Client) error {
	var todo []int
	for h := range in.nodes {
		if in.nodes[h].path != nil {
			todo = append(todo, h)
		}
	}
	const perRequest = 1000
	for lo := 0; lo < len(todo); lo += perRequest {
		batch := todo[lo:min(lo+perRequest, len(todo))]
		req := &ua.TranslateBrowsePathsToNodeIDsRequest{}
		for _, h := range batch {
			rp := &ua.RelativePath{}
			for _, qn := range in.nodes[h].path {
				rp.Elements = append(rp.Elements, &ua.RelativePathElement{
					ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, TargetName: qn})
			}
			req.BrowsePaths = append(req.BrowsePaths, &ua.BrowsePath{StartingNode: ua.NewNumericNodeID(0, id.ObjectsFolder), RelativePath: rp})
		}
		var res *ua.TranslateBrowsePathsToNodeIDsResponse
		err := c.Send(ctx, req, func(r ua.Response) error {
			var ok bool
			if res, ok = r.(*ua.TranslateBrowsePathsToNodeIDsResponse); !ok {
				return fmt.Errorf("unexpected response %T", r)
			}
			return nil
		})
		if err != nil {
			return subscribeError{fmt.Errorf("translate browse paths: %w", err)}
		}
		for i, h := range batch {
			nd := &in.nodes[h]
			var r *ua.BrowsePathResult
			if i < len(res.Results) {
				r = res.Results[i]
			}
			switch {
			case r != nil && r.StatusCode == ua.StatusOK && len(r.Targets) > 0 && r.Targets[0].TargetID != nil && r.Targets[0].TargetID.NodeID != nil:
				nd.id = r.Targets[0].TargetID.NodeID
				nd.jsonID = strconv.AppendQuote(nil, nd.id.String())
				if nd.missing {
					in.log.Info("browse path resolved", "browse_path", nd.idText, "node", nd.id.String())
				}
				nd.missing = false
			default:
				status := ua.StatusBadNoMatch
				if r != nil && r.StatusCode != ua.StatusOK {
					status = r.StatusCode
				}
				nd.id = nil
				errorsTotal.WithLabelValues(in.srv.Name, errItem).Inc()
				if !nd.missing {
					in.log.Error("browse path not found on the server; the node is not monitored (katka looks again on every connect)", "browse_path", nd.idText, "status", status)
				}
				nd.missing = true
			}
		}
	}
	return nil
}

// monitor creates the monitored items, 1000 per request. A refused item is
// counted as an item error and logged once until the server accepts it.
func (in *Input) monitor(ctx context.Context, sub *opcua.Subscription) error {
	var handles []int
	for h := range in.nodes {
		if in.nodes[h].id != nil {
			handles = append(handles, h)
		}
	}
	const perRequest = 1000
	for lo := 0; lo < len(handles); lo += perRequest {
		batch := handles[lo:min(lo+perRequest, len(handles))]
		var reqs []*ua.MonitoredItemCreateRequest
		for _, h := range batch {
			n := in.srv.Nodes[h]
			r := opcua.NewMonitoredItemCreateRequestWithDefaults(in.nodes[h].id, ua.AttributeIDValue, uint32(h))
			r.RequestedParameters.SamplingInterval = float64(n.SamplingInterval) / float64(time.Millisecond)
			r.RequestedParameters.QueueSize = uint32(max(n.QueueSize, 1))
			r.RequestedParameters.DiscardOldest = true
			if n.Deadband > 0 {
				r.RequestedParameters.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{
					Trigger: ua.DataChangeTriggerStatusValue, DeadbandType: uint32(ua.DeadbandTypeAbsolute), DeadbandValue: n.Deadband})
			}
			reqs = append(reqs, r)
		}
		res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, reqs...)
		if err != nil {
			return subscribeError{fmt.Errorf("create monitored items: %w", err)}
		}
		for i, r := range res.Results {
			if i >= len(batch) {
				break
			}
			nd := &in.nodes[batch[i]]
			if r.StatusCode == ua.StatusOK {
				nd.missing = false
				continue
			}
			errorsTotal.WithLabelValues(in.srv.Name, errItem).Inc()
			if !nd.missing {
				in.log.Error("monitored item refused", "node", nd.idText, "status", r.StatusCode)
			}
			nd.missing = true
		}
	}
	return nil
}

// writeLoop turns notifications into records and writes them in batches until
// the client closes for good, the link is dead or ctx is done.
func (in *Input) writeLoop(ctx context.Context, c *opcua.Client, notifs <-chan *opcua.PublishNotificationData, up interface{ Set(float64) }) error {
	var (
		recs   []broker.Record
		first  time.Time
		timer  = time.NewTimer(time.Hour)
		check  = time.NewTicker(100 * time.Millisecond)
		state  = opcua.Connected
		health = make(chan healthEvent)
		downAt time.Time // when the client started reconnecting by itself
	)
	timer.Stop()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go in.watch(hctx, c, health)
	defer check.Stop()
	flush := func() {
		in.write(ctx, recs)
		recs = recs[:0]
	}
	// follow notes a change of the client's connection state st.
	follow := func(st opcua.ConnState) {
		switch {
		case st == opcua.Connected && state != opcua.Connected:
			reconnects.WithLabelValues(in.srv.Name).Inc()
			up.Set(1)
			in.back("session and subscription restored by the client")
		case st != opcua.Connected && state == opcua.Connected:
			up.Set(0)
			downAt = time.Now()
			in.lost(fmt.Errorf("the client lost the connection (%s) and restores it", st))
		}
		state = st
	}
	for {
		var wake <-chan time.Time
		if len(recs) > 0 {
			timer.Reset(max(in.cfg.BatchWait-time.Since(first), 0))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			flush()
		case <-check.C:
			st := c.State()
			if st == opcua.Closed {
				flush()
				return errors.New("the client closed the connection")
			}
			if st != opcua.Connected && state != opcua.Connected && time.Since(downAt) > clientRestoreMax {
				flush()
				return fmt.Errorf("the client did not restore the connection within %v; connecting anew", clientRestoreMax)
			}
			follow(st)
		case e := <-health:
			switch {
			case e.lost:
				up.Set(0)
				in.lost(e.err)
			case e.back:
				up.Set(1)
				in.back("the same session answered again")
			default:
				flush()
				return e.err
			}
		case n := <-notifs:
			if n.Error == nil { // data again: say so before writing it
				if state != opcua.Connected {
					follow(c.State())
				}
				if state == opcua.Connected && !in.link.up {
					up.Set(1)
					in.back("the same session answered again")
				}
			}
			if len(recs) == 0 {
				first = time.Now()
			}
			recs = in.records(n, recs)
			if len(recs) >= in.cfg.BatchMaxRecords {
				flush()
			}
		}
		timer.Stop()
	}
}

// clientRestoreMax is how long the client may take to restore a lost
// connection by itself (it retries every second and keeps the server's queued
// values by transferring the subscription) before katka drops it and connects
// anew. It is long: gopcua's client races with its own reconnection when it
// is closed in the middle of one, so katka closes a reconnecting client only
// when it is stuck (a server that now refuses it, say).
const clientRestoreMax = 2 * time.Minute

// Health checks: the client ignores publish timeouts, so a half-open link
// (cut without a reset, or a server that stopped answering) would leave the
// subscription silent for ever. watch reads the server's clock every
// healthEvery; after healthFailures unanswered reads the link is lost.
//
// A lost link is kept as long as it may come back: when a cable is plugged in
// again the same connection carries on, and the server delivers what it
// queued for the subscription meanwhile (a new session would lose that).
// Meanwhile watch dials the server anew (a TCP connection and the OPC UA
// hello, nothing more) at every check: once such a probe is answered while the
// old connection stays silent for staleAfterProbe, that connection is dead
// (a middlebox dropped it, the server forgot it) and katka connects anew; it
// does so anyway after the session timeout, when the server has dropped the
// session and what it queued.
const (
	healthEvery     = 2 * time.Second
	healthFailures  = 3
	staleAfterProbe = 10 * time.Second
	sessionTimeout  = time.Minute
)

// healthEvent is what watch found: the link lost, back, or dead for good (err set).
type healthEvent struct {
	lost, back bool
	err        error
}

// watch checks the link until ctx is done or it reports it dead.
func (in *Input) watch(ctx context.Context, c *opcua.Client, events chan<- healthEvent) {
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	req := &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), AttributeID: ua.AttributeIDValue}}}
	send := func(e healthEvent) bool {
		select {
		case events <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var (
		failed    int
		lostAt    time.Time // zero while the link is up
		answering time.Time // when a fresh connection was first answered while lost
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if c.State() != opcua.Connected {
			failed = 0 // the client is restoring the link; writeLoop bounds how long
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, healthEvery)
		_, err := c.Read(rctx, req)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			failed = 0
			if !lostAt.IsZero() && !send(healthEvent{back: true}) {
				return
			}
			lostAt, answering = time.Time{}, time.Time{}
			continue
		case lostAt.IsZero():
			if failed++; failed < healthFailures {
				continue
			}
			lostAt = time.Now()
			if !send(healthEvent{lost: true, err: fmt.Errorf("the server did not answer %d reads of its clock in a row: %w", failed, err)}) {
				return
			}
		}
		if answering.IsZero() && in.probe(ctx) == nil {
			answering = time.Now()
		}
		switch {
		case !answering.IsZero() && time.Since(answering) >= staleAfterProbe:
			send(healthEvent{err: fmt.Errorf("the server answers new connections but not katka's session for %v; connecting anew", staleAfterProbe)})
			return
		case time.Since(lostAt) >= sessionTimeout:
			send(healthEvent{err: fmt.Errorf("no answer for %v, the session timeout; connecting anew", sessionTimeout)})
			return
		}
	}
}

// probe dials the server anew and exchanges the OPC UA hello.
func (in *Input) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, healthEvery)
	defer cancel()
	conn, err := uacp.Dial(pctx, in.srv.Endpoint)
	if err != nil {
		return err
	}
	return conn.Close()
}

// records appends the records of one publish notification.
func (in *Input) records(n *opcua.PublishNotificationData, recs []broker.Record) []broker.Record {
	if n.Error != nil {
		// The client reports a failed publish here and reconnects: the
		// state change is what the log says, once.
		errorsTotal.WithLabelValues(in.srv.Name, errNotify).Inc()
		in.log.Debug("subscription error (the client reconnects)", "err", n.Error)
		return recs
	}
	dc, ok := n.Value.(*ua.DataChangeNotification)
	if !ok {
		return recs
	}
	notifications.WithLabelValues(in.srv.Name).Add(float64(len(dc.MonitoredItems)))
	now := time.Now()
	for _, it := range dc.MonitoredItems {
		if it == nil || it.Value == nil || int(it.ClientHandle) >= len(in.nodes) {
			continue
		}
		nd := &in.nodes[it.ClientHandle]
		dv := it.Value
		ts := dv.SourceTimestamp
		if ts.IsZero() {
			ts = dv.ServerTimestamp
		}
		if ts.IsZero() {
			ts = now
		}
		recs = append(recs, broker.Record{Key: nd.key, Value: in.value(nd, dv), Timestamp: ts})
	}
	return recs
}

// value is the JSON of one data change.
func (in *Input) value(nd *node, dv *ua.DataValue) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"server":`...)
	b = strconv.AppendQuote(b, in.srv.Name)
	b = append(b, `,"node":`...)
	b = append(b, nd.jsonID...)
	b = append(b, `,"name":`...)
	b = append(b, nd.jsonName...)
	b = append(b, `,"value":`...)
	var v any
	if dv.Value != nil {
		v = dv.Value.Value()
	}
	if j, err := json.Marshal(v); err == nil {
		b = append(b, j...)
	} else {
		b = strconv.AppendQuote(b, fmt.Sprint(v))
	}
	b = append(b, `,"status_code":`...)
	b = strconv.AppendUint(b, uint64(dv.Status), 10)
	b = append(b, `,"status":`...)
	if dv.Status == ua.StatusOK {
		b = append(b, `"Good"`...)
	} else {
		b = strconv.AppendQuote(b, dv.Status.Error())
	}
	for _, t := range []struct {
		name string
		ts   time.Time
	}{{"source_ts", dv.SourceTimestamp}, {"server_ts", dv.ServerTimestamp}} {
		if t.ts.IsZero() {
			continue
		}
		b = append(b, `,"`...)
		b = append(b, t.name...)
		b = append(b, `":"`...)
		b = t.ts.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}')
}

// write writes recs, retrying until they are written or ctx is done.
func (in *Input) write(ctx context.Context, recs []broker.Record) {
	if len(recs) == 0 {
		return
	}
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := in.w.Write(ctx, in.cfg.Topic, in.cfg.Partitions, recs)
		if err == nil {
			records.WithLabelValues(in.srv.Name).Add(float64(len(recs)))
			return
		}
		errorsTotal.WithLabelValues(in.srv.Name, errWrite).Inc()
		in.log.Error("write failed, retrying", "records", len(recs), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
