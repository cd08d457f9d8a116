package kafka

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"

	"github.com/katka-io/katka/appliance/auth"
)

// selfSigned writes a self-signed P-256 certificate for 127.0.0.1 and
// returns the cert and key paths and a pool trusting it.
func selfSigned(t testing.TB) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "katka-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cp, kp, pool
}

// roundTrip writes one request on nc and reads its response.
func benchRoundTrip(tb testing.TB, nc net.Conn, r *bufio.Reader, req kmsg.Request, version int16, resp kmsg.Response) {
	req.SetVersion(version)
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, 'b')
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := nc.Write(b); err != nil {
		tb.Fatal(err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		tb.Fatal(err)
	}
	resp.SetVersion(version)
	skip := 4
	if resp.IsFlexible() && req.Key() != 18 {
		skip = 5
	}
	if err := resp.ReadFrom(body[skip:]); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkConnect measures what a new connection costs the client and
// katka together, all on loopback: TCP + ApiVersions (plaintext), + the TLS
// handshake (ssl, TLS 1.3, P-256), + a SCRAM-SHA-512 login (sasl_ssl; the
// client's PBKDF2 is done once and cached, so this is the broker's share).
func BenchmarkConnect(b *testing.B) {
	cert, key, pool := selfSigned(b)
	users, err := auth.OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := users.SetPassword("alice", "alice-secret", 0, auth.ScramSHA512); err != nil {
		b.Fatal(err)
	}
	tc := TLSConfig{CertFile: cert, KeyFile: key}
	env := newEnvConfig(b, Config{Users: users, Listeners: []ListenerConfig{
		{Name: "PLAINTEXT", Addr: "127.0.0.1:0", Security: Plaintext},
		{Name: "SSL", Addr: "127.0.0.1:0", Security: SSL, TLS: tc},
		{Name: "SASL_SSL", Addr: "127.0.0.1:0", Security: SASLSSL, TLS: tc},
	}})
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	scramClient, err := scram.SHA512.NewClient("alice", "alice-secret", "")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"PLAINTEXT", "SSL", "SASL_SSL"} {
		addr := env.srv.ListenerAddr(name).String()
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if name != "PLAINTEXT" {
					tconn := tls.Client(nc, clientTLS)
					if err := tconn.Handshake(); err != nil {
						b.Fatal(err)
					}
					nc = tconn
				}
				r := bufio.NewReader(nc)
				benchRoundTrip(b, nc, r, kmsg.NewPtrApiVersionsRequest(), 3, kmsg.NewPtrApiVersionsResponse())
				if name == "SASL_SSL" {
					hs := kmsg.NewPtrSASLHandshakeRequest()
					hs.Mechanism = "SCRAM-SHA-512"
					benchRoundTrip(b, nc, r, hs, 1, kmsg.NewPtrSASLHandshakeResponse())
					conv := scramClient.NewConversation()
					msg, _ := conv.Step("")
					for !conv.Done() {
						ar := kmsg.NewPtrSASLAuthenticateRequest()
						ar.SASLAuthBytes = []byte(msg)
						resp := kmsg.NewPtrSASLAuthenticateResponse()
						benchRoundTrip(b, nc, r, ar, 1, resp)
						if resp.ErrorCode != 0 {
							b.Fatalf("login failed: %d", resp.ErrorCode)
						}
						if msg, err = conv.Step(string(resp.SASLAuthBytes)); err != nil {
							b.Fatal(err)
						}
					}
				}
				nc.Close()
			}
		})
	}
}
