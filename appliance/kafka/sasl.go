package kafka

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"
	"golang.org/x/time/rate"

	"github.com/katka-io/katka/appliance/auth"
)

// DefaultAuthFailureDelay is how long a failed login makes its client wait
// before the answer (Kafka's connection.failed.authentication.delay.ms, made
// long enough to slow password guessing). Only that connection waits.
const DefaultAuthFailureDelay = time.Second

// maxSASLTokenBytes bounds one raw SASL token of the v0 framing (a SCRAM or
// PLAIN message is well under 1 KiB).
const maxSASLTokenBytes = 64 << 10

// saslState is where a connection of a SASL listener is in its login.
type saslState struct {
	mech          auth.Mechanism // chosen by SaslHandshake; "" before it
	raw           bool           // SaslHandshake v0: tokens follow as bare frames (no Kafka header)
	conv          *scram.ServerConversation
	user          string // user name the client gave, for the failure log
	authenticated bool
}

// authState is the Server's authentication bookkeeping: failure metric and
// the rate limit of failure log lines.
type authState struct {
	failures   *prometheus.CounterVec
	logLimit   *rate.Limiter
	mu         sync.Mutex
	suppressed int // failure lines not logged since the last one that was
}

func newAuthState() authState {
	return authState{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_auth_failures_total",
			Help: "Failed logins on the Kafka listeners (SASL, and client certificates refused in the TLS handshake), by listener and mechanism.",
		}, []string{"listener", "mechanism"}),
		logLimit: rate.NewLimiter(rate.Every(time.Second), 10),
	}
}

// authBefore reports whether r may be handled on c before the client has
// logged in: on a SASL listener only ApiVersions, SaslHandshake and
// SaslAuthenticate are, as in Kafka; anything else closes the connection.
func (s *Server) authBefore(c *conn, r *request) error {
	if c.sasl == nil || c.sasl.authenticated {
		return nil
	}
	switch r.key {
	case 17, 18, 36:
		return nil
	}
	return protoErrf("unexpected %s request before SASL authentication completed", kmsg.NameForKey(r.key))
}

// authFailed records a failed login: metric, rate-limited log line with the
// principal, mechanism and client, and the delay that slows guessing. The
// delay is spent in this connection's goroutine, so other clients are not
// slowed; it ends early when the server closes.
func (s *Server) authFailed(c *conn, mech, user string, err error) {
	s.auth.failures.WithLabelValues(c.lis.cfg.Name, mech).Inc()
	s.auth.mu.Lock()
	if s.auth.logLimit.Allow() {
		n := s.auth.suppressed
		s.auth.suppressed = 0
		s.auth.mu.Unlock()
		s.log.Warn("kafka authentication failed", "listener", c.lis.cfg.Name, "mechanism", mech, "principal", "User:"+user, "remote", c.remote, "reason", err, "suppressed_since_last", n)
	} else {
		s.auth.suppressed++
		s.auth.mu.Unlock()
	}
	d := s.cfg.AuthFailureDelay
	if d <= 0 {
		d = DefaultAuthFailureDelay
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// saslStep feeds one client token of the chosen mechanism to the login. It
// returns the server's answer and whether the login is complete; an error is
// a failed login.
func (s *Server) saslStep(c *conn, msg []byte) (out []byte, done bool, err error) {
	st := c.sasl
	switch st.mech {
	case auth.Plain:
		// [authzid] NUL authcid NUL passwd (RFC 4616)
		parts := bytes.Split(msg, []byte{0})
		if len(parts) != 3 {
			return nil, false, errors.New("malformed PLAIN message")
		}
		st.user = string(parts[1])
		if len(parts[0]) > 0 && string(parts[0]) != st.user {
			return nil, false, errors.New("authorization id differs from the user name")
		}
		if err := s.cfg.Users.CheckPlain(st.user, string(parts[2])); err != nil {
			return nil, false, err
		}
		c.principal = auth.Principal{Type: "User", Name: st.user}
		return nil, true, nil
	case auth.ScramSHA256, auth.ScramSHA512:
		if st.conv == nil {
			srv, err := s.cfg.Users.ScramServer(st.mech)
			if err != nil {
				return nil, false, err
			}
			st.conv = srv.NewConversation()
		}
		resp, err := st.conv.Step(string(msg))
		if u := st.conv.Username(); u != "" {
			st.user = u
		}
		if err != nil {
			return nil, false, err
		}
		if !st.conv.Done() {
			return []byte(resp), false, nil
		}
		if !st.conv.Valid() {
			return nil, false, auth.ErrBadCredentials
		}
		c.principal = auth.Principal{Type: "User", Name: st.conv.Username()}
		return []byte(resp), true, nil
	}
	return nil, false, fmt.Errorf("no SASL mechanism chosen")
}

// failMessage is Kafka's message for a failed SASL login.
func failMessage(mech auth.Mechanism) string {
	return "Authentication failed during authentication due to invalid credentials with SASL mechanism " + string(mech)
}

// serveRawSASL reads and answers one bare SASL token, the framing that
// follows SaslHandshake v0: a 4-byte size and the token, answered the same
// way. A failed login closes the connection, as Kafka does in this framing.
func (s *Server) serveRawSASL(c *conn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxSASLTokenBytes {
		return protoErrf("SASL token of %d bytes exceeds %d", n, maxSASLTokenBytes)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c.r, msg); err != nil {
		return err
	}
	out, done, err := s.saslStep(c, msg)
	if err != nil {
		s.authFailed(c, string(c.sasl.mech), c.sasl.user, err)
		return errAuthFailed
	}
	if done {
		s.loggedIn(c)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(out)), uint32(len(out)))
	buf = append(buf, out...)
	c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err = c.nc.Write(buf)
	return err
}

// errAuthFailed closes a connection whose login failed.
var errAuthFailed = errors.New("authentication failed")

// loggedIn marks c authenticated.
func (s *Server) loggedIn(c *conn) {
	c.sasl.authenticated = true
	c.sasl.conv = nil
	c.sasl.raw = false
	s.log.Debug("kafka client authenticated", "listener", c.lis.cfg.Name, "mechanism", c.sasl.mech, "principal", c.principal.String(), "remote", c.remote)
}

// handshakeTLS runs the TLS handshake of a new connection on a TLS listener
// and maps a verified client certificate to the connection's principal. A
// refused client certificate counts as a failed login.
func (s *Server) handshakeTLS(c *conn) error {
	tc := tls.Server(c.nc, c.lis.tlsCfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	err := tc.HandshakeContext(s.ctx)
	tc.SetDeadline(time.Time{})
	if err != nil {
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			user := ""
			if len(ve.UnverifiedCertificates) > 0 {
				user = ve.UnverifiedCertificates[0].Subject.CommonName
			}
			s.authFailed(c, "SSL", user, err)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		c.principal = c.lis.tls.principalOf(certs[0])
	}
	c.nc = tc
	c.r.Reset(tc)
	return nil
}

// saslHandlers are the authentication API keys.
func saslHandlers() map[int16]handler {
	return map[int16]handler{
		17: {0, 1, (*Server).handleSaslHandshake},
		36: {0, 2, (*Server).handleSaslAuthenticate},
		50: {0, 0, (*Server).handleDescribeUserScramCredentials},
		51: {0, 0, (*Server).handleAlterUserScramCredentials},
	}
}
