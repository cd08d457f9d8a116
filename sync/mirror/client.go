package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// Header keys added to every mirrored record. The uplink adds the katka.origin.*
// headers (where the record came from, for audits and at-least-once
// deduplication); the downlink adds the katka.central.* headers, which are also its
// resume position.
const (
	HeaderOriginSite      = "katka.origin.site"
	HeaderOriginTopic     = "katka.origin.topic"
	HeaderOriginPartition = "katka.origin.partition"
	HeaderOriginOffset    = "katka.origin.offset"
	// HeaderOriginEpoch is set (decimal, from 1) on records mirrored after the
	// partition was re-based because the central checkpoint was beyond the local
	// log (records lost locally after the central cluster had them, e.g. a power
	// cut with fsync: interval). Absent means epoch 0. Within one epoch an origin
	// offset names one record; the same offset in two epochs names two records.
	HeaderOriginEpoch = "katka.origin.epoch"

	HeaderCentralTopic     = "katka.central.topic"
	HeaderCentralPartition = "katka.central.partition"
	HeaderCentralOffset    = "katka.central.offset"
)

// clientOpts turns the sync config into kgo options shared by every client of
// the link: seeds, TLS, SASL, timeouts and a logger.
func clientOpts(cfg config.Sync, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("katka-sync-" + cfg.Site),
		kgo.DialTimeout(5 * time.Second),
		kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.RetryTimeout(20 * time.Second),
		kgo.MetadataMinAge(time.Second),
		kgo.WithLogger(kgoLogger{log}),
	}
	if cfg.TLS.Enabled {
		tc := &tls.Config{ServerName: cfg.TLS.ServerName, InsecureSkipVerify: cfg.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if cfg.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("sync.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("sync.tls.ca_file %s: no PEM certificate found", cfg.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("sync.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch cfg.SASL.Mechanism {
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: cfg.SASL.Password}.AsSha512Mechanism()))
	}
	return opts, nil
}

// ErrAuthFailed is wrapped by the error of a session (and of Ping) that ended
// because the central cluster rejected the SASL login; the status shows the
// whole message as the link's last error.
var ErrAuthFailed = errors.New("SASL authentication failed")

// Kafka API keys of the SASL exchange.
const (
	keySASLHandshake    = 17
	keySASLAuthenticate = 36
)

// authError explains a failed SASL exchange with the broker at addr.
func authError(s config.SyncSASL, addr string, err error) error {
	return fmt.Errorf("%w at %s (mechanism %s, user %q): the central cluster rejected the login; check sync.sasl.username and sync.sasl.password, and that the user has %s credentials there: %w",
		ErrAuthFailed, addr, s.Mechanism, s.Username, s.Mechanism, err)
}

// isSASLError reports whether err is a SASL error code of a broker.
func isSASLError(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState)
}

// isConnClosed reports whether err means the peer closed the connection (as
// opposed to a timeout of a hanging broker, or our own shutdown).
func isConnClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// saslWatch is the kgo hook of probe: a SASL exchange that fails cancels the
// probe at once, with an error that says so. Without it a broker that closes
// the connection on bad credentials (instead of answering
// SASL_AUTHENTICATION_FAILED) would be retried by kgo until its retry timeout
// and reported as a bare "EOF".
type saslWatch struct {
	sasl   config.SyncSASL
	cancel context.CancelCauseFunc
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (w saslWatch) OnBrokerRead(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if (key == keySASLHandshake || key == keySASLAuthenticate) && err != nil && isConnClosed(err) {
		w.cancel(authError(w.sasl, net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), fmt.Errorf("connection closed by the broker during authentication: %w", err)))
	}
}

// OnBrokerConnect implements kgo.HookBrokerConnect: the broker answered the
// SASL exchange with an error code.
func (w saslWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil && isSASLError(err) {
		w.cancel(authError(w.sasl, net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err))
	}
}

// probe connects to the central cluster with the link's options (TLS, SASL)
// and returns its ApiVersions. Every session starts with it, so a rejected
// login or certificate ends the session at once with an error that names the
// cause, instead of surfacing later as a retried "EOF". It asks for metadata
// first: brokers answer ApiVersions before a login, so that alone would not
// notice a missing SASL setting.
func probe(ctx context.Context, cfg config.Sync, opts []kgo.Opt) (*kmsg.ApiVersionsResponse, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...), kgo.WithHooks(saslWatch{sasl: cfg.SASL, cancel: cancel}))...)
	if err != nil {
		return nil, fmt.Errorf("central client: %w", err)
	}
	defer cl.Close()
	meta := kmsg.NewPtrMetadataRequest()
	meta.Topics = []kmsg.MetadataRequestTopic{} // brokers only, no topics
	var resp kmsg.Response
	if _, err = cl.Request(pctx, meta); err == nil {
		resp, err = cl.Request(pctx, kmsg.NewPtrApiVersionsRequest())
	}
	if err != nil {
		if cause := context.Cause(pctx); errors.Is(cause, ErrAuthFailed) {
			return nil, cause
		}
		if isSASLError(err) {
			return nil, authError(cfg.SASL, fmt.Sprint(cfg.Brokers), err)
		}
		return nil, fmt.Errorf("connect to central cluster %v: %w", cfg.Brokers, err)
	}
	return resp.(*kmsg.ApiVersionsResponse), nil
}

// producerOpts are the options of the uplink's producing client.
func producerOpts(cfg config.Sync) []kgo.Opt {
	var codec kgo.CompressionCodec
	switch cfg.Compression {
	case "lz4":
		codec = kgo.Lz4Compression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "gzip":
		codec = kgo.GzipCompression()
	case "none":
		codec = kgo.NoCompression()
	default:
		codec = kgo.ZstdCompression()
	}
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedBytes(int(cfg.BatchBytes) * 2),
		kgo.MaxBufferedRecords(1 << 20),
		kgo.ProducerLinger(0),
		// No kgo.RecordDeliveryTimeout: kgo measures it from the record
		// timestamp, and mirrored records keep their (possibly hours old)
		// local timestamps. The batch's context bounds delivery instead.
	}
}

// kgoLogger forwards franz-go's log lines to slog at debug level (warnings and
// errors at their own level), so a flapping link does not flood the log.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(nil, slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelWarn // the link retries; errors reach the status
	case kgo.LogLevelWarn:
		lvl = slog.LevelDebug
	}
	l.log.Log(nil, lvl, "kafka client: "+msg, kv...)
}

// originHeaders returns the katka.origin.* headers of one local record; the
// epoch header only after a re-base (epoch > 0).
func originHeaders(site, topic string, partition int32, offset, epoch int64) []kgo.RecordHeader {
	hs := []kgo.RecordHeader{
		{Key: HeaderOriginSite, Value: []byte(site)},
		{Key: HeaderOriginTopic, Value: []byte(topic)},
		{Key: HeaderOriginPartition, Value: strconv.AppendInt(nil, int64(partition), 10)},
		{Key: HeaderOriginOffset, Value: strconv.AppendInt(nil, offset, 10)},
	}
	if epoch > 0 {
		hs = append(hs, kgo.RecordHeader{Key: HeaderOriginEpoch, Value: strconv.AppendInt(nil, epoch, 10)})
	}
	return hs
}

// backoff is a capped exponential backoff with a little jitter.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the next wait and doubles it up to max.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur
	b.cur *= 2
	if b.cur > b.max {
		b.cur = b.max
	}
	// up to 20% jitter so many sites do not reconnect in step
	j := time.Duration(time.Now().UnixNano() % int64(d/5+1))
	return d - d/10 + j
}

// reset starts over at min after a success.
func (b *backoff) reset() { b.cur = 0 }

// connHook tells a link whether its client can reach the central cluster right
// now: a failed dial marks it disconnected (with the error), any successful
// read marks it connected. kgo retries inside a session, so without this the
// status would lag an outage by the request timeouts, and a central cluster
// that goes away mid-transfer (kgo retrying inside one batch) would leave no
// line in the log: ln logs the first failure and the first answer after it.
type connHook struct {
	link string
	m    *metrics
	st   *linkState
	ln   *linkstate.Link
	live *atomic.Bool // set while the link's session is established
	// giveUp, when set, is called with the error of a failed dial once the
	// link has been down for giveUpAfter: it ends the session.
	giveUp func(error)
}

// giveUpAfter is how long a session's dials may keep failing before the
// session ends and reconnects follow the link's backoff.
const giveUpAfter = time.Second

func (h connHook) set(c bool, err error) {
	if !h.live.Load() {
		return
	}
	if c {
		h.ln.Seen() // an answer; back once answers keep coming (Settle)
	} else {
		h.ln.Down(err)
	}
	h.m.connected.WithLabelValues(h.link).Set(map[bool]float64{true: 1, false: 0}[c])
	h.st.update(func(s *LinkStatus) {
		s.Connected = c
		if err != nil {
			s.LastError, s.LastErrorAt = err.Error(), time.Now()
		}
	})
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		err = fmt.Errorf("connect to %s:%d: %w", meta.Host, meta.Port, err)
		h.set(false, err)
		if s := h.ln.Snapshot(); h.giveUp != nil && h.live.Load() && s.State == linkstate.Down && time.Since(s.Since) >= giveUpAfter {
			h.giveUp(err)
		}
	}
}

// OnBrokerRead implements kgo.HookBrokerRead: a response marks the link
// connected, a failed read (a timed-out request to a hanging broker, a reset)
// marks it disconnected until the next response.
func (h connHook) OnBrokerRead(meta kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	switch {
	case err == nil:
		h.set(true, nil)
	case !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed):
		h.set(false, fmt.Errorf("read from %s:%d: %w", meta.Host, meta.Port, err))
	}
}
