package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// produceConsume produces n records to topic with a client made from opts
// and consumes them back with another, checking every value.
func produceConsume(t *testing.T, addr, topic string, n int, opts ...kgo.Opt) {
	t.Helper()
	ctx := kafkaCtx(t, 30*time.Second)
	p := saslClient(t, addr, append(opts, kgo.AllowAutoTopicCreation())...)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%s-%d", topic, i))})
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	c := saslClient(t, addr, append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	got := map[string]bool{}
	for len(got) < n {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s: %d of %d records: %v", topic, len(got), n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consume %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	for i := range n {
		if v := fmt.Sprintf("%s-%d", topic, i); !got[v] {
			t.Fatalf("record %q not consumed", v)
		}
	}
}

// TestAuthKgo: franz-go's kgo logs in with SCRAM-SHA-256 and with PLAIN over
// SASL_SSL, SCRAM-SHA-512 over SASL_PLAINTEXT and with a client certificate
// on the mTLS listener, produces and consumes. A wrong password, an unknown
// user, plaintext against the TLS port and a client certificate from an
// untrusted CA each fail with the error kgo shows for it, are counted in
// katka_auth_failures_total, and write nothing.
func TestAuthKgo(t *testing.T) {
	a := startAuthKatka(t)
	tlsOpt := kgo.DialTLSConfig(a.PKI.clientTLS(t, "", ""))
	scram256 := func(u, p string) kgo.Opt { return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha256Mechanism()) }
	scram512 := func(u, p string) kgo.Opt { return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha512Mechanism()) }
	plainM := func(u, p string) kgo.Opt { return kgo.SASL(plain.Auth{User: u, Pass: p}.AsMechanism()) }

	t.Run("SCRAM-SHA-256 over SASL_SSL", func(t *testing.T) {
		produceConsume(t, a.SASLSSL, "auth.kgo.scram256", 20, tlsOpt, scram256("alice", "alice-secret"))
	})
	t.Run("PLAIN over SASL_SSL", func(t *testing.T) {
		produceConsume(t, a.SASLSSL, "auth.kgo.plain", 20, tlsOpt, plainM("bob", "bob-secret"))
	})
	t.Run("SCRAM-SHA-512 over SASL_PLAINTEXT", func(t *testing.T) {
		produceConsume(t, a.SASLPlaintext, "auth.kgo.scram512", 20, scram512("admin", "admin-secret"))
	})
	t.Run("client certificate", func(t *testing.T) {
		produceConsume(t, a.MTLS, "auth.kgo.mtls", 20, kgo.DialTLSConfig(a.PKI.clientTLS(t, a.PKI.ClientCert, a.PKI.ClientKey)))
	})

	const denied = "auth.kgo.denied"
	// failProduce tries to produce one record and returns the error of the
	// client's first request (kgo keeps retrying a produce until its
	// timeout, so the error it shows a user comes from Ping).
	failProduce := func(t *testing.T, addr string, opts ...kgo.Opt) error {
		t.Helper()
		cl := saslClient(t, addr, append(opts, kgo.AllowAutoTopicCreation(), kgo.RetryTimeout(time.Second))...)
		ctx := kafkaCtx(t, 20*time.Second)
		err := cl.Ping(ctx)
		if err == nil {
			t.Fatal("login succeeded")
		}
		t.Logf("kgo error: %v", err)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if perr := cl.ProduceSync(pctx, &kgo.Record{Topic: denied, Value: []byte("must not be written")}).FirstErr(); perr == nil {
			t.Fatal("produce succeeded")
		}
		return err
	}
	t.Run("wrong password", func(t *testing.T) {
		if err := failProduce(t, a.SASLSSL, tlsOpt, scram256("alice", "wrong")); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("want SASL_AUTHENTICATION_FAILED, got %v", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if err := failProduce(t, a.SASLSSL, tlsOpt, plainM("eve", "alice-secret")); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("want SASL_AUTHENTICATION_FAILED, got %v", err)
		}
	})
	t.Run("plaintext against the TLS port", func(t *testing.T) {
		err := failProduce(t, a.SASLSSL, scram256("alice", "alice-secret"))
		if errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("want a connection error, got %v", err)
		}
	})
	t.Run("untrusted client certificate", func(t *testing.T) {
		err := failProduce(t, a.MTLS, kgo.DialTLSConfig(a.PKI.clientTLS(t, a.PKI.RogueCert, a.PKI.RogueKey)))
		if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("want a certificate error, got %v", err)
		}
	})
	if end := a.topicEnd(t, denied); end != -1 {
		t.Fatalf("topic %s exists after failed logins (end offset %d)", denied, end)
	}
	for _, m := range []string{`listener="SASL_SSL",mechanism="SCRAM-SHA-256"`, `listener="SASL_SSL",mechanism="PLAIN"`, `listener="SSL",mechanism="SSL"`} {
		if v := a.metric(t, "katka_auth_failures_total{"+m+"}"); v == "" || v == "0" {
			t.Errorf("katka_auth_failures_total{%s} = %q, want >= 1", m, v)
		}
	}
	if !a.kafkaKatka.alive() || a.logCount("kafka authentication failed") == 0 {
		t.Fatalf("no failed-login log line:\n%s", a.logTail(20))
	}
}

// TestAuthScramAdmin: kadm (AlterUserScramCredentials, DescribeUserScramCredentials)
// as the bootstrap super user creates a user that can then log in with
// SCRAM-SHA-512, lists users without their secrets, and deletes it; a user
// that is not a super user gets CLUSTER_AUTHORIZATION_FAILED.
func TestAuthScramAdmin(t *testing.T) {
	a := startAuthKatka(t)
	ctx := kafkaCtx(t, 30*time.Second)
	tlsOpt := kgo.DialTLSConfig(a.PKI.clientTLS(t, "", ""))
	admin := kadm.NewClient(saslClient(t, a.SASLSSL, tlsOpt, kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism())))
	res, err := admin.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "carol-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatalf("upsert carol: %v", err)
	}
	produceConsume(t, a.SASLSSL, "auth.kadm.carol", 5, tlsOpt, kgo.SASL(scram.Auth{User: "carol", Pass: "carol-secret"}.AsSha512Mechanism()))

	desc, err := admin.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range desc.Sorted() {
		names = append(names, u.User)
		if u.User == "carol" && (len(u.CredInfos) != 1 || u.CredInfos[0].Iterations != 8192 || u.CredInfos[0].Mechanism != kadm.ScramSha512) {
			t.Errorf("carol described as %+v", u.CredInfos)
		}
	}
	if got := strings.Join(names, ","); got != "admin,alice,bob,carol" {
		t.Fatalf("described users %s, want admin,alice,bob,carol", got)
	}
	one, err := admin.DescribeUserSCRAMs(ctx, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if err := one["nobody"].Err; !errors.Is(err, kerr.ResourceNotFound) {
		t.Fatalf("describe unknown user: %v", err)
	}

	alice := kadm.NewClient(saslClient(t, a.SASLSSL, tlsOpt, kgo.SASL(scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism())))
	res, err = alice.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice2", Mechanism: kadm.ScramSha256, Password: "x-secret"}})
	if err == nil {
		err = res.Error()
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("non-super user altering users: %v", err)
	}

	res, err = admin.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "carol", Mechanism: kadm.ScramSha512}}, nil)
	if err != nil || res.Error() != nil {
		t.Fatalf("delete carol: %v %v", err, res.Error())
	}
	cl := saslClient(t, a.SASLSSL, tlsOpt, kgo.SASL(scram.Auth{User: "carol", Pass: "carol-secret"}.AsSha512Mechanism()), kgo.RetryTimeout(2*time.Second))
	if err := cl.Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("deleted user logs in: %v", err)
	}
}

// TestAuthFailedLoginDelay: a failed SASL login answers only after the
// failure delay (at least 1 s), and while it waits another client logs in,
// produces and is answered at once.
func TestAuthFailedLoginDelay(t *testing.T) {
	a := startAuthKatka(t)
	badDone := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		cl, err := kgo.NewClient(kgo.SeedBrokers(a.SASLPlaintext), kgo.SASL(plain.Auth{User: "alice", Pass: "guess"}.AsMechanism()), kgo.RetryTimeout(time.Second))
		if err == nil {
			cl.Ping(kafkaCtx(t, 10*time.Second))
			cl.Close()
		}
		badDone <- time.Since(t0)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for a.logCount("kafka authentication failed") == 0 { // the line is written when the delay starts
		if time.Now().After(deadline) {
			t.Fatal("no failed login logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	produceConsume(t, a.SASLPlaintext, "auth.delay.good", 1, kgo.SASL(plain.Auth{User: "bob", Pass: "bob-secret"}.AsMechanism()))
	select {
	case d := <-badDone:
		t.Fatalf("the failed login was answered (after %v) before the good client finished", d)
	default:
	}
	if d := <-badDone; d < time.Second {
		t.Fatalf("failed login answered after %v, want >= 1s", d)
	}
}

// TestAuthRequestsBeforeLogin: on a SASL listener ApiVersions is answered
// before login, but any other request (here Metadata) closes the connection
// without an answer, as Kafka does.
func TestAuthRequestsBeforeLogin(t *testing.T) {
	a := startAuthKatka(t)
	nc, err := net.DialTimeout("tcp", a.SASLPlaintext, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	if _, err := nc.Write(kafkaRequest(kmsg.NewPtrApiVersionsRequest(), 0, 1)); err != nil {
		t.Fatal(err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("ApiVersions before login not answered: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	want := map[int16]bool{17: true, 36: true, 50: true, 51: true}
	for _, k := range resp.ApiKeys {
		delete(want, k.ApiKey)
	}
	if len(want) > 0 {
		t.Fatalf("ApiVersions does not advertise %v", want)
	}
	if _, err := nc.Write(kafkaRequest(kmsg.NewPtrMetadataRequest(), 1, 2)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(hdr[:]); err == nil {
		t.Fatalf("Metadata before login answered (%d bytes)", n)
	}
	if a.logCount("before SASL authentication completed") == 0 {
		t.Fatalf("no log line for the refused request:\n%s", a.logTail(10))
	}
}

// TestAuthTLSCertReload: replacing the listener's certificate and key files
// (a rotation) makes new connections get the new certificate without a
// restart; connections then still log in.
func TestAuthTLSCertReload(t *testing.T) {
	a := startAuthKatka(t)
	serial := func() string {
		c, err := tls.Dial("tcp", a.SASLSSL, a.PKI.clientTLS(t, "", ""))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	// Write the new pair beside the old and rename over it, as cert tools do.
	cert, key := a.PKI.leaf(t, "server-rotated", pkix.Name{CommonName: "katka-test-rotated"}, a.PKI.caCert, a.PKI.caKey, true)
	if err := os.Rename(key, a.PKI.ServerKey); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cert, a.PKI.ServerCert); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for serial() == before {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded within 15s:\n%s", a.logTail(10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.logCount("kafka TLS certificates reloaded") == 0 {
		t.Fatal("reload not logged")
	}
	produceConsume(t, a.SASLSSL, "auth.reload", 3, kgo.DialTLSConfig(a.PKI.clientTLS(t, "", "")), kgo.SASL(scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism()))
}

// TestAuthInternalWriters: with only authenticated listeners in front,
// katka's own writers (here the simulated sensors) keep writing through the
// in-process broker API, and a SCRAM client over SASL_SSL reads what they
// wrote.
func TestAuthInternalWriters(t *testing.T) {
	a := startAuthKatkaBase(t, "sensors:\n  simulated:\n    interval: 20ms\nstorage:\n  segment_bytes: 256KiB\n")
	cl := saslClient(t, a.SASLSSL, kgo.DialTLSConfig(a.PKI.clientTLS(t, "", "")),
		kgo.SASL(scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism()),
		kgo.ConsumeTopics("sensors.simulated"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := kafkaCtx(t, 20*time.Second)
	n := 0
	for n < 30 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d sensor records over SASL_SSL, want 30", n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		n += fs.NumRecords()
	}
}
