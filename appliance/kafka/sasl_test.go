package kafka

import (
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// saslEnv is a server with a plaintext listener and a SASL_PLAINTEXT one
// (PLAIN and SCRAM-SHA-256 only), each with its own advertised address,
// and user alice/alice-secret.
func saslEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	users, err := auth.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SetPassword("alice", "alice-secret", 0, auth.ScramSHA256); err != nil {
		t.Fatal(err)
	}
	env := newEnvConfig(t, Config{Users: users, AuthFailureDelay: 10 * time.Millisecond, Listeners: []ListenerConfig{
		{Name: "PLAINTEXT", Addr: "127.0.0.1:0", AdvertisedAddr: "inside.local:9092", Security: Plaintext},
		{Name: "SASL", Addr: "127.0.0.1:0", AdvertisedAddr: "outside.example:9093", Security: SASLPlaintext, Mechanisms: []auth.Mechanism{auth.Plain, auth.ScramSHA256}},
	}})
	return env, env.srv.ListenerAddr("SASL").String()
}

// rawTo is a raw connection to addr.
func rawTo(t *testing.T, addr string) *rawConn {
	e := &testEnv{addr: addr}
	return e.raw(t)
}

// TestSaslHandshakeStates: SaslHandshake on a plaintext listener and
// SaslAuthenticate before a handshake answer ILLEGAL_SASL_STATE; an unknown
// mechanism gets UNSUPPORTED_SASL_MECHANISM with the offered ones; a wrong
// PLAIN password gets SASL_AUTHENTICATION_FAILED with Kafka's message and the
// connection is closed.
func TestSaslHandshakeStates(t *testing.T) {
	env, saslAddr := saslEnv(t)

	r := env.raw(t)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "PLAIN"
	if resp := r.roundTrip(hs, 1).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("handshake on plaintext listener: error %d", resp.ErrorCode)
	}

	r = rawTo(t, saslAddr)
	if resp := r.roundTrip(kmsg.NewPtrSASLAuthenticateRequest(), 1).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("authenticate before handshake: error %d", resp.ErrorCode)
	}
	hs.Mechanism = "SCRAM-SHA-512"
	resp := r.roundTrip(hs, 1).(*kmsg.SASLHandshakeResponse)
	if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(resp.SupportedMechanisms) != 2 || resp.SupportedMechanisms[0] != "PLAIN" {
		t.Fatalf("unsupported mechanism: %+v", resp)
	}
	hs.Mechanism = "PLAIN"
	if resp := r.roundTrip(hs, 1).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("PLAIN handshake: error %d", resp.ErrorCode)
	}
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.SASLAuthBytes = []byte("\x00alice\x00wrong")
	aresp := r.roundTrip(ar, 1).(*kmsg.SASLAuthenticateResponse)
	if aresp.ErrorCode != kerr.SaslAuthenticationFailed.Code || aresp.ErrorMessage == nil ||
		*aresp.ErrorMessage != "Authentication failed during authentication due to invalid credentials with SASL mechanism PLAIN" {
		t.Fatalf("wrong password: %+v", aresp)
	}
	r.expectClosed()
}

// TestSaslPlainLoginAndAdvertisedListener: after a PLAIN login (v1) the
// client may send any request, and Metadata names the advertised address of
// the listener the client came in on.
func TestSaslPlainLoginAndAdvertisedListener(t *testing.T) {
	env, saslAddr := saslEnv(t)
	r := rawTo(t, saslAddr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "PLAIN"
	r.roundTrip(hs, 1)
	ar := kmsg.NewPtrSASLAuthenticateRequest()
	ar.SASLAuthBytes = []byte("alice\x00alice\x00alice-secret")
	if resp := r.roundTrip(ar, 1).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != 0 {
		t.Fatalf("login: %+v", resp)
	}
	md := r.roundTrip(kmsg.NewPtrMetadataRequest(), 12).(*kmsg.MetadataResponse)
	if br := md.Brokers[0]; br.Host != "outside.example" || br.Port != 9093 {
		t.Fatalf("SASL listener advertises %s:%d", br.Host, br.Port)
	}
	md = env.raw(t).roundTrip(kmsg.NewPtrMetadataRequest(), 12).(*kmsg.MetadataResponse)
	if br := md.Brokers[0]; br.Host != "inside.local" || br.Port != 9092 {
		t.Fatalf("plaintext listener advertises %s:%d", br.Host, br.Port)
	}
}

// TestSaslV0Framing: after SaslHandshake v0 the PLAIN token comes as a bare
// size-prefixed frame and is answered with an empty one; then requests work.
// A bare token larger than maxSASLTokenBytes closes the connection.
func TestSaslV0Framing(t *testing.T) {
	_, saslAddr := saslEnv(t)
	r := rawTo(t, saslAddr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "PLAIN"
	r.roundTrip(hs, 0)
	tok := []byte("\x00alice\x00alice-secret")
	r.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(tok))), tok...))
	var hdr [4]byte
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil || binary.BigEndian.Uint32(hdr[:]) != 0 {
		t.Fatalf("v0 PLAIN answer: %v %x", err, hdr)
	}
	if md := r.roundTrip(kmsg.NewPtrMetadataRequest(), 1).(*kmsg.MetadataResponse); len(md.Brokers) != 1 {
		t.Fatalf("metadata after v0 login: %+v", md)
	}

	r = rawTo(t, saslAddr)
	r.roundTrip(hs, 0)
	r.write(binary.BigEndian.AppendUint32(nil, maxSASLTokenBytes+1))
	r.expectClosed()
}

// TestSaslFailureLogRateLimited: every failed login is counted in
// katka_auth_failures_total, but a burst of them logs at most the limiter's
// burst of lines.
func TestSaslFailureLogRateLimited(t *testing.T) {
	env, saslAddr := saslEnv(t)
	const attempts = 25
	for range attempts {
		r := rawTo(t, saslAddr)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Mechanism = "PLAIN"
		r.roundTrip(hs, 1)
		ar := kmsg.NewPtrSASLAuthenticateRequest()
		ar.SASLAuthBytes = []byte("\x00mallory\x00guess")
		if resp := r.roundTrip(ar, 1).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
			t.Fatalf("error %d", resp.ErrorCode)
		}
		r.c.Close()
	}
	if got := testutil.ToFloat64(env.srv.auth.failures.WithLabelValues("SASL", "PLAIN")); got != attempts {
		t.Fatalf("katka_auth_failures_total = %v, want %d", got, attempts)
	}
	lines := strings.Count(env.logs.String(), "kafka authentication failed")
	if lines < 1 || lines > 12 { // burst 10, plus one a second
		t.Fatalf("%d failure lines logged for %d failures", lines, attempts)
	}
	if !strings.Contains(env.logs.String(), "principal=User:mallory") || !strings.Contains(env.logs.String(), "mechanism=PLAIN") {
		t.Fatalf("failure line lacks principal or mechanism:\n%s", env.logs.String())
	}
}
