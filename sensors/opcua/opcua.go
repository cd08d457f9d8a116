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
	id       *ua.NodeID
	idText   string
	key      []byte // server/name
	jsonName []byte
	jsonID   []byte
}

// Input is one OPC UA server connection with one subscription.
type Input struct {
	cfg   Config
	srv   ServerConfig
	nodes []node // by client handle
	w     *sensors.Writer
	log   *slog.Logger

	lastErr string // the last logged connection error, so each is logged once
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
		id, err := ua.ParseNodeID(n.NodeID)
		if err != nil {
			return nil, fmt.Errorf("nodes[%d].node_id: %w", j, err)
		}
		name := n.Name
		if name == "" {
			name = n.NodeID
		}
		in.nodes = append(in.nodes, node{id: id, idText: n.NodeID, key: []byte(s.Name + "/" + name),
			jsonName: strconv.AppendQuote(nil, name), jsonID: strconv.AppendQuote(nil, n.NodeID)})
	}
	if in.cfg.BatchMaxRecords < 1 {
		in.cfg.BatchMaxRecords = 1
	}
	return in, nil
}

// Run connects, subscribes and writes the changes until ctx is done; a lost
// connection is re-established (by the client, which re-creates the
// subscription) and, when the client gives up, by Run with backoff.
func (in *Input) Run(ctx context.Context) error {
	up := connected.WithLabelValues(in.srv.Name)
	defer up.Set(0)
	for wait := 200 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 30*time.Second) {
		err := in.session(ctx, up)
		if ctx.Err() != nil {
			return nil
		}
		in.report(err)
		if err == nil {
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// report logs a connection error once (until a different one comes) and counts it by kind.
func (in *Input) report(err error) {
	if err == nil {
		return
	}
	kind := errConnect
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		switch sc {
		case ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid, ua.StatusBadIdentityTokenRejected,
			ua.StatusBadCertificateUntrusted, ua.StatusBadCertificateInvalid, ua.StatusBadSecurityChecksFailed,
			ua.StatusBadCertificateRevoked, ua.StatusBadCertificateTimeInvalid, ua.StatusBadCertificateURIInvalid:
			kind = errAuth
		}
	}
	var se subscribeError
	if errors.As(err, &se) {
		kind = errSubscribe
	}
	errorsTotal.WithLabelValues(in.srv.Name, kind).Inc()
	if msg := err.Error(); msg != in.lastErr {
		in.lastErr = msg
		if kind == errAuth {
			in.log.Error("OPC UA server refused katka's identity or certificate; check auth, username, password, cert_file", "endpoint", in.srv.Endpoint, "err", err)
		} else {
			in.log.Error("OPC UA connection failed, retrying", "endpoint", in.srv.Endpoint, "kind", kind, "err", err)
		}
	}
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
	var certDER []byte
	if s.CertFile != "" {
		cert, key, err := loadKeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, err
		}
		certDER = cert
		opts = append(opts, opcua.Certificate(cert), opcua.PrivateKey(key))
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
		opts = append(opts, opcua.AuthCertificate(certDER))
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

// session runs one client until it is closed for good or ctx is done.
func (in *Input) session(ctx context.Context, up interface{ Set(float64) }) error {
	opts, err := in.clientOptions(ctx)
	if err != nil {
		return err
	}
	c, err := opcua.NewClient(in.srv.Endpoint, opts...)
	if err != nil {
		return err
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	defer c.Close(context.Background())
	notifs := make(chan *opcua.PublishNotificationData, 256)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: in.srv.PublishInterval}, notifs)
	if err != nil {
		return subscribeError{fmt.Errorf("subscribe: %w", err)}
	}
	if err := in.monitor(ctx, sub); err != nil {
		return err
	}
	subscribes.WithLabelValues(in.srv.Name).Inc()
	up.Set(1)
	in.lastErr = ""
	in.log.Info("subscribed", "endpoint", in.srv.Endpoint, "nodes", len(in.nodes), "policy", in.srv.SecurityPolicy, "mode", in.srv.SecurityMode)
	defer up.Set(0)
	return in.writeLoop(ctx, c, notifs, up)
}

// monitor creates the monitored items, 1000 per request.
func (in *Input) monitor(ctx context.Context, sub *opcua.Subscription) error {
	const perRequest = 1000
	for lo := 0; lo < len(in.nodes); lo += perRequest {
		var reqs []*ua.MonitoredItemCreateRequest
		for h := lo; h < min(lo+perRequest, len(in.nodes)); h++ {
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
			if r.StatusCode != ua.StatusOK {
				errorsTotal.WithLabelValues(in.srv.Name, errItem).Inc()
				in.log.Error("monitored item refused", "node", in.nodes[lo+i].idText, "status", r.StatusCode)
			}
		}
	}
	return nil
}

// writeLoop turns notifications into records and writes them in batches until
// the client closes for good or ctx is done.
func (in *Input) writeLoop(ctx context.Context, c *opcua.Client, notifs <-chan *opcua.PublishNotificationData, up interface{ Set(float64) }) error {
	var (
		recs  []broker.Record
		first time.Time
		timer = time.NewTimer(time.Hour)
		check = time.NewTicker(200 * time.Millisecond)
		state = opcua.Connected
		sick  = make(chan error, 1)
	)
	timer.Stop()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go in.watch(hctx, c, sick)
	defer check.Stop()
	flush := func() {
		in.write(ctx, recs)
		recs = recs[:0]
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
			switch st := c.State(); {
			case st == opcua.Closed:
				flush()
				return errors.New("the client closed the connection")
			case st != state && st == opcua.Connected:
				reconnects.WithLabelValues(in.srv.Name).Inc()
				in.log.Info("reconnected: session and subscription restored", "endpoint", in.srv.Endpoint)
				up.Set(1)
				state = st
			case st != state:
				in.log.Warn("connection lost, reconnecting", "endpoint", in.srv.Endpoint, "state", st.String())
				up.Set(0)
				state = st
			}
		case err := <-sick:
			flush()
			return err
		case n := <-notifs:
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

// Health checks: the client ignores publish timeouts, so a half-open link
// (cut without a reset, or a server that stopped answering) would leave the
// subscription silent for ever. watch reads the server's clock every
// healthEvery and reports after healthFailures failures in a row.
const (
	healthEvery    = 2 * time.Second
	healthFailures = 3
)

// watch reads ServerStatus.CurrentTime until ctx is done and sends an error
// on sick when the server stopped answering.
func (in *Input) watch(ctx context.Context, c *opcua.Client, sick chan<- error) {
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	req := &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), AttributeID: ua.AttributeIDValue}}}
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, healthEvery)
		_, err := c.Read(rctx, req)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failed = 0
			continue
		}
		if failed++; failed >= healthFailures {
			sick <- fmt.Errorf("the server did not answer %d reads of its clock in a row (%w); connecting anew", failed, err)
			return
		}
	}
}

// records appends the records of one publish notification.
func (in *Input) records(n *opcua.PublishNotificationData, recs []broker.Record) []broker.Record {
	if n.Error != nil {
		errorsTotal.WithLabelValues(in.srv.Name, errNotify).Inc()
		in.log.Warn("subscription error (the client reconnects)", "err", n.Error)
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
