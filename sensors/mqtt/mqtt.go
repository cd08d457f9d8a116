// Package mqtt is katka's MQTT input: it subscribes to topic filters on one or more
// MQTT brokers and writes each message to a katka topic chosen by mapping rules.
//
// Nothing is lost: each connection uses a fixed client id with CleanSession=false, so
// the MQTT broker keeps the subscriptions and queues QoS 1 and 2 messages while katka
// is away, and acknowledgements are turned off in the client (AutoAckDisabled). A
// message is acknowledged (PUBACK, or PUBREC for QoS 2) only once its record is
// fsynced in katka. Messages are written in batches: what arrives within
// batch_wait of a batch's first message (a linger, as Kafka's linger.ms; up to
// batch_max_messages) goes to each partition as one record batch, compressed per
// the topic's compression.type, and then every message of the batch is
// acknowledged in the order it was received, as MQTT requires.
//
// Delivery is at least once: if katka stops between the fsync and the
// acknowledgement, the MQTT broker sends the message again and it is written twice.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
)

func init() { sensors.Add("mqtt", factory) }

// errLogEvery is the least time between two logged errors of the same kind.
const errLogEvery = 10 * time.Second

// factory builds one Input per configured broker when the MQTT input is enabled.
func factory(cfg config.Sensors, env sensors.Env) ([]sensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	var out []sensors.Input
	for i := range c.Brokers {
		in, err := New(*c, i, w, env.Log)
		if err != nil {
			return nil, err
		}
		in.link = env.Links.New(in.linkOptions())
		if err := in.ensureTopics(env.Broker); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Input is one MQTT broker connection feeding katka.
type Input struct {
	name     string
	cfg      Config
	bcfg     BrokerConfig
	tls      *tls.Config
	mapper   mapper
	w        *sensors.Writer
	log      *slog.Logger
	queueCap int
	// link logs the connection's state changes once each (lost, back after
	// N s), not once per reconnect attempt.
	link *linkstate.Link

	mu      sync.Mutex
	running bool
}

// New checks the configuration of broker i of cfg and returns its input, writing
// through w. A nil log discards log output.
func New(cfg Config, i int, w *sensors.Writer, log *slog.Logger) (*Input, error) {
	if i < 0 || i >= len(cfg.Brokers) {
		return nil, fmt.Errorf("brokers[%d]: no such broker", i)
	}
	if w == nil {
		return nil, errors.New("writer is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := cfg.Brokers[i]
	path := fmt.Sprintf("brokers[%d]", i)
	if b.ClientID == "" {
		return nil, fmt.Errorf("%s.client_id: must not be empty", path)
	}
	if cfg.QoS < 0 || cfg.QoS > 2 {
		return nil, fmt.Errorf("qos %d is not allowed (allowed: 0, 1, 2)", cfg.QoS)
	}
	if cfg.BatchMaxMessages < 1 {
		return nil, fmt.Errorf("batch_max_messages %d must be at least 1", cfg.BatchMaxMessages)
	}
	if cfg.MaxMessageBytes < 1 {
		return nil, fmt.Errorf("max_message_bytes %d must be at least 1", cfg.MaxMessageBytes)
	}
	if err := config.ValidTopicName(cfg.DeadLetterTopic); err != nil {
		return nil, fmt.Errorf("dead_letter_topic: %w", err)
	}
	rules, err := compileRules(cfg.Rules)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(b.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%s.url: %q is not a URL with a host", path, b.URL)
	}
	in := &Input{
		name:   b.Name,
		cfg:    cfg,
		bcfg:   b,
		mapper: mapper{rules: rules, deadLetter: cfg.DeadLetterTopic, maxBytes: int(cfg.MaxMessageBytes)},
		w:      w,
	}
	if in.name == "" {
		in.name = b.URL
	}
	in.log = log.With("sensor", "mqtt", "broker", in.name)
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss":
		if in.tls, err = tlsConfig(b); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		// paho would ignore them and connect in plain text, password included.
		if set := tlsKeys(b); len(set) > 0 {
			return nil, fmt.Errorf("%s: %s set but url %s is not TLS, where TLS settings are ignored (use ssl://, tls://, mqtts:// or wss://)", path, strings.Join(set, ", "), b.URL)
		}
	}
	// The queue holds what arrived while a batch is written: more than the MQTT
	// broker's in-flight window, so the client's reader never waits on us.
	in.queueCap = max(4*cfg.BatchMaxMessages, 4096)
	in.link = linkstate.New(in.linkOptions())
	return in, nil
}

// linkOptions describe the input's link to its MQTT broker: named
// mqtt/<broker name> (the URL without its password when unnamed).
func (in *Input) linkOptions() linkstate.Options {
	name := in.bcfg.Name
	if name == "" {
		name = in.bcfg.URL
		if u, err := url.Parse(in.bcfg.URL); err == nil {
			name = u.Redacted()
		}
	}
	return linkstate.Options{Name: "mqtt/" + name, Log: in.log, RetryMin: in.cfg.ReconnectMin, RetryMax: in.cfg.ReconnectMax}
}

// tlsKeys lists the TLS settings of b that are set.
func tlsKeys(b BrokerConfig) []string {
	var set []string
	for _, k := range []struct {
		name string
		on   bool
	}{
		{"ca_file", b.CAFile != ""},
		{"cert_file", b.CertFile != ""},
		{"key_file", b.KeyFile != ""},
		{"server_name", b.ServerName != ""},
		{"insecure_skip_verify", b.InsecureSkipVerify},
	} {
		if k.on {
			set = append(set, k.name)
		}
	}
	return set
}

// tlsConfig loads the CA and client certificate files of b.
func tlsConfig(b BrokerConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: b.ServerName, InsecureSkipVerify: b.InsecureSkipVerify}
	if tc.ServerName == "" {
		// paho's proxy path (all_proxy set) dials without filling it in.
		if u, err := url.Parse(b.URL); err == nil {
			tc.ServerName = u.Hostname()
		}
	}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", b.CAFile)
		}
		tc.RootCAs = pool
	}
	if b.CertFile != "" || b.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file %s, key_file %s: %w", b.CertFile, b.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ensureTopics creates the rules' topics and the dead-letter topic if missing, so a
// problem shows at start.
func (in *Input) ensureTopics(b sensors.Broker) error {
	for _, r := range in.mapper.rules {
		if _, err := b.EnsureTopic(r.topic, r.partitions); err != nil {
			return fmt.Errorf("topic %s: %w", r.topic, err)
		}
	}
	if _, err := b.EnsureTopic(in.mapper.deadLetter, 0); err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", in.mapper.deadLetter, err)
	}
	return nil
}

// received is one message waiting to be written.
type received struct {
	msg paho.Message
	at  time.Time
}

// Run connects, subscribes and ingests until ctx is done, reconnecting with capped
// exponential backoff whenever the connection fails. Messages not yet durable when
// ctx ends are not acknowledged; the MQTT broker sends them again next time.
func (in *Input) Run(ctx context.Context) error {
	in.mu.Lock()
	if in.running {
		in.mu.Unlock()
		return errors.New("mqtt: input is already running")
	}
	in.running = true
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.running = false
		in.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan received, in.queueCap)
	lost := make(chan error, 1)
	ins := in.name
	msgs, bytes := messagesIn.WithLabelValues(ins), bytesIn.WithLabelValues(ins)
	up := connected.WithLabelValues(ins)

	opts := paho.NewClientOptions().
		AddBroker(in.bcfg.URL).
		SetClientID(in.bcfg.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true). // one goroutine calls the handler, in arrival order
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			msgs.Inc()
			bytes.Add(float64(len(m.Payload())))
			select {
			case queue <- received{msg: m, at: time.Now()}:
			case <-ctx.Done(): // not acknowledged: sent again next session
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if in.bcfg.KeepAlive > 0 {
		opts.SetKeepAlive(in.bcfg.KeepAlive)
	}
	if in.bcfg.Username != "" {
		opts.SetUsername(in.bcfg.Username).SetPassword(in.bcfg.Password)
	}
	if in.tls != nil {
		opts.SetTLSConfig(in.tls)
	}
	client := paho.NewClient(opts)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.ingest(ctx, queue)
	}()
	in.log.Info("mqtt input started", "url", in.bcfg.URL, "client_id", in.bcfg.ClientID, "rules", len(in.mapper.rules), "qos", in.cfg.QoS)

	filters := make(map[string]byte)
	for _, r := range in.cfg.Rules {
		filters[r.Filter] = byte(in.cfg.QoS)
	}
	backoff := in.cfg.ReconnectMin
	for ctx.Err() == nil {
		err := in.connect(ctx, client, filters)
		if err != nil {
			if ctx.Err() != nil {
				break // shutting down: not a failure of the link
			}
			connects.WithLabelValues(ins, "error").Inc()
			in.link.Down(err) // one WARN when lost, a reminder at most every 5 min
			if client.IsConnected() {
				client.Disconnect(0)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, in.cfg.ReconnectMax)
			continue
		}
		connects.WithLabelValues(ins, "ok").Inc()
		up.Set(1)
		backoff = in.cfg.ReconnectMin
		// "link up" the first time, then "link back after N s", once the
		// connection has lasted linkstate's Settle: two clients with one
		// client id kick each other out at every reconnect, and that is
		// one WARN, not two lines per retry.
		at := time.Now()
		confirm := time.AfterFunc(in.link.Settle(), func() { in.link.UpSince(at, "filters", len(filters)) })
		select {
		case err := <-lost:
			confirm.Stop()
			up.Set(0)
			in.link.Down(err)
			sleep(ctx, backoff)
		case <-ctx.Done():
			confirm.Stop()
		}
	}
	up.Set(0)
	wg.Wait() // the last batch is written and acknowledged before we disconnect
	if client.IsConnectionOpen() {
		client.Disconnect(250)
	}
	in.log.Info("mqtt input stopped")
	return nil
}

// connect opens the connection and subscribes to every filter.
func (in *Input) connect(ctx context.Context, client paho.Client, filters map[string]byte) error {
	if err := wait(ctx, client.Connect()); err != nil {
		return fmt.Errorf("connect to %s: %w%s", in.bcfg.URL, err, in.connectHint(err))
	}
	tok := client.SubscribeMultiple(filters, nil)
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for f, q := range tok.(*paho.SubscribeToken).Result() {
		if q == 0x80 {
			return fmt.Errorf("subscribe %q: refused by the broker", f)
		}
	}
	return nil
}

// connectHint returns what to check after a failed connection attempt, as
// "; <advice>", or "" when the error says it all.
func (in *Input) connectHint(err error) string {
	b := in.bcfg
	var (
		op       *net.OpError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
	)
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		if b.Username == "" {
			return "; the broker refused the connection without credentials: set username and password"
		}
		return fmt.Sprintf("; the broker refused the credentials: check username %q and password", b.Username)
	case errors.As(err, &unknown):
		if b.CAFile == "" {
			return "; the broker's certificate is not signed by a CA of the system roots: set ca_file"
		}
		return fmt.Sprintf("; the broker's certificate is not signed by a CA in ca_file %s", b.CAFile)
	case errors.As(err, &hostname):
		return "; set server_name to a name in the broker's certificate"
	case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the broker
		return "; the broker ended the TLS session: " + in.clientCertQuestion()
	case in.tls != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		// With TLS 1.3 the broker checks the client certificate after the client's
		// handshake is done: its alert can be lost when it resets the connection
		// while the CONNECT is written.
		return "; the broker closed the TLS connection: " + in.clientCertQuestion()
	}
	return ""
}

// clientCertQuestion asks about the client certificate, the usual reason a TLS
// broker ends a session.
func (in *Input) clientCertQuestion() string {
	if in.bcfg.CertFile == "" {
		return "does it require a client certificate? (cert_file and key_file are not set)"
	}
	return fmt.Sprintf("does it trust the CA that signed cert_file %s?", in.bcfg.CertFile)
}

// wait waits for a paho token, at most 30s or until ctx is done.
func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("timed out after 30s")
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ingest takes batches off the queue, writes them and acknowledges them in order,
// until ctx is done.
func (in *Input) ingest(ctx context.Context, queue <-chan received) {
	ins := in.name
	lat, size := ackLatency.WithLabelValues(ins), batchSize.WithLabelValues(ins)
	l := lingerer{linger: in.cfg.BatchWait, max: in.cfg.BatchMaxMessages}
	batch := make([]received, 0, in.cfg.BatchMaxMessages)
	for {
		batch = batch[:0]
		select {
		case r := <-queue:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
		batch = l.collect(ctx, queue, batch)
		t0 := time.Now()
		if !in.write(ctx, batch) {
			return // ctx ended before the batch was durable: not acknowledged
		}
		now := time.Now()
		for _, r := range batch {
			r.msg.Ack()
			lat.Observe(now.Sub(r.at).Seconds())
		}
		size.Observe(float64(len(batch)))
		if in.log.Enabled(ctx, slog.LevelDebug) {
			in.log.Debug("mqtt batch", "messages", len(batch), "write", now.Sub(t0), "ack", time.Since(now), "oldest", now.Sub(batch[0].at))
		}
	}
}

// minQuiet and maxQuiet bound the shortest pause in arrivals that ends a
// linger early: a tenth of the linger, between them. A floor far below the
// linger ended batches at every scheduling hiccup of a loaded box (a 250µs
// floor gave 87-113 messages per batch at batch_wait 50ms where 560 arrive
// within it); the cap keeps a stopped burst from idling long.
const (
	minQuiet = 250 * time.Microsecond
	maxQuiet = 5 * time.Millisecond
)

// lingerer fills batches the way a Kafka producer's linger.ms does: a batch
// is written when it holds max messages or linger after its first message
// arrived, whichever comes first, so that a topic's compression.type works
// on many records at once. Because nothing is acknowledged before the write,
// an MQTT broker stops sending once its in-flight window
// (max_inflight_messages) is full, and lingering on would only idle: so a
// batch of two or more messages is also written when no message has arrived
// for 8 times the batch's own mean gap between arrivals (at least a tenth of
// the linger, within minQuiet..maxQuiet).
// A steady trickle keeps the gaps even and lingers the full time; a burst
// that stops is written at once.
type lingerer struct {
	linger time.Duration
	max    int
	timer  *time.Timer
}

// collect appends to batch (holding its first message) what arrives on
// queue until the batch is complete as described above, or ctx is done.
func (l *lingerer) collect(ctx context.Context, queue <-chan received, batch []received) []received {
	deadline := batch[0].at.Add(l.linger)
	quiet := min(max(l.linger/10, minQuiet), maxQuiet)
	for len(batch) < l.max {
		select {
		case r := <-queue:
			batch = append(batch, r)
			continue
		default:
		}
		if l.linger <= 0 {
			return batch
		}
		now := time.Now()
		wait := deadline.Sub(now)
		if n := len(batch); n >= 2 {
			pace := batch[n-1].at.Sub(batch[0].at) / time.Duration(n-1)
			wait = min(wait, batch[n-1].at.Add(max(8*pace, quiet)).Sub(now))
		}
		if wait <= 0 {
			return batch
		}
		if l.timer == nil {
			l.timer = time.NewTimer(wait)
		} else {
			l.timer.Reset(wait)
		}
		select {
		case r := <-queue:
			batch = append(batch, r)
			l.timer.Stop()
		case <-l.timer.C:
		case <-ctx.Done():
			l.timer.Stop()
			return batch
		}
	}
	return batch
}

// write maps a batch to records and writes them, retrying failed topics with
// backoff until they are durable. It returns false if ctx ended first.
func (in *Input) write(ctx context.Context, batch []received) bool {
	type group struct {
		partitions int32
		recs       []broker.Record
	}
	groups := make(map[string]*group)
	var order []string
	for _, r := range batch {
		m := r.msg
		mp := in.mapper.mapMessage(m.Topic(), m.Qos(), m.Retained(), m.Payload(), r.at)
		if mp.reason != "" {
			deadLettered.WithLabelValues(in.name, mp.reason).Inc()
		}
		g := groups[mp.topic]
		if g == nil {
			g = &group{partitions: mp.partitions}
			groups[mp.topic] = g
			order = append(order, mp.topic)
		}
		g.recs = append(g.recs, mp.rec)
	}
	backoff := 50 * time.Millisecond
	var lastLog time.Time
	for {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			done []string
		)
		for _, t := range order {
			g := groups[t]
			if g == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := in.w.Write(ctx, t, g.partitions, g.recs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				done = append(done, t)
			}()
		}
		wg.Wait()
		for _, t := range done {
			delete(groups, t) // written: not retried
		}
		if len(errs) == 0 {
			return true
		}
		writeErrors.WithLabelValues(in.name).Inc()
		if time.Since(lastLog) >= errLogEvery {
			in.log.Error("mqtt: writing a batch failed; retrying, nothing acknowledged yet", "err", errors.Join(errs...), "messages", len(batch), "backoff", backoff)
			lastLog = time.Now()
		}
		sleep(ctx, backoff)
		if ctx.Err() != nil {
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
