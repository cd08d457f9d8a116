package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/auth"
)

// TLSConfig names the PEM files of a TLS listener and how client
// certificates are treated.
type TLSConfig struct {
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile, KeyFile string
	// CAFile holds the CAs trusted for client certificates; needed when
	// ClientAuth is requested or required.
	CAFile string
	// ClientAuth is Kafka's ssl.client.auth: none (default), requested or
	// required.
	ClientAuth string
	// PrincipalFrom maps a client certificate to a principal, as Kafka's
	// ssl.principal.mapping.rules: "cn" (default) gives User:<CN>, "dn" the
	// full subject DN (RFC 2253, e.g. User:CN=alice,O=plant).
	PrincipalFrom string
}

// tlsReloadCheck is how often the certificate files are checked for change.
const tlsReloadCheck = time.Second

// tlsFiles serves a listener's certificates from PEM files and reloads them
// when a file changes (certificates are rotated on gateways); a rotation
// that fails to load keeps the previous certificates and is logged.
type tlsFiles struct {
	cfg        TLSConfig
	clientAuth tls.ClientAuthType
	log        *slog.Logger

	mu        sync.Mutex
	cur       *tls.Config // per-handshake config with the loaded cert and CAs
	stamp     string      // identity of the files cur was loaded from
	lastCheck time.Time
}

func newTLSFiles(c TLSConfig, log *slog.Logger) (*tlsFiles, error) {
	t := &tlsFiles{cfg: c, log: log}
	switch c.ClientAuth {
	case "", "none":
		t.clientAuth = tls.NoClientCert
	case "requested":
		t.clientAuth = tls.VerifyClientCertIfGiven
	case "required":
		t.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("ssl client auth %q (allowed: none, requested, required)", c.ClientAuth)
	}
	switch c.PrincipalFrom {
	case "", "cn", "dn":
	default:
		return nil, fmt.Errorf("principal mapping %q (allowed: cn, dn)", c.PrincipalFrom)
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate file and a key file")
	}
	if t.clientAuth != tls.NoClientCert && c.CAFile == "" {
		return nil, errors.New("client certificates need a CA file")
	}
	stamp, err := t.filesStamp()
	if err != nil {
		return nil, err
	}
	cur, err := t.load()
	if err != nil {
		return nil, err
	}
	t.cur, t.stamp, t.lastCheck = cur, stamp, time.Now()
	return t, nil
}

// serverConfig is the listener's tls.Config: TLS 1.2 or newer, certificates
// picked per handshake so a rotation applies to the next connection.
func (t *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.current(), nil
		},
	}
}

// current returns the config of the newest loadable files.
func (t *tlsFiles) current() *tls.Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.lastCheck) < tlsReloadCheck {
		return t.cur
	}
	t.lastCheck = time.Now()
	stamp, err := t.filesStamp()
	if err != nil || stamp == t.stamp {
		return t.cur
	}
	cur, err := t.load()
	if err != nil {
		t.log.Warn("kafka TLS files changed but do not load; keeping the previous certificates", "err", err)
		t.stamp = stamp // do not retry until they change again
		return t.cur
	}
	t.cur, t.stamp = cur, stamp
	t.log.Info("kafka TLS certificates reloaded", "cert_file", t.cfg.CertFile)
	return t.cur
}

// filesStamp identifies the current contents of the files by size and mtime.
func (t *tlsFiles) filesStamp() (string, error) {
	s := ""
	for _, f := range []string{t.cfg.CertFile, t.cfg.KeyFile, t.cfg.CAFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("TLS file: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// load reads the files into a per-handshake config.
func (t *tlsFiles) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s / key %s: %w", t.cfg.CertFile, t.cfg.KeyFile, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: t.clientAuth}
	if t.cfg.CAFile != "" {
		pem, err := os.ReadFile(t.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificates", t.cfg.CAFile)
		}
		c.ClientCAs = pool
	}
	return c, nil
}

// principalOf maps a verified client certificate to a principal.
func (t *tlsFiles) principalOf(cert *x509.Certificate) auth.Principal {
	if t.cfg.PrincipalFrom == "dn" {
		return auth.Principal{Type: "User", Name: cert.Subject.String()}
	}
	return auth.Principal{Type: "User", Name: cert.Subject.CommonName}
}
