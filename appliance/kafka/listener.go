package kafka

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/katka-io/katka/appliance/auth"
)

// Security is a listener's security protocol, by Kafka's names
// (security.protocol): whether the connection is TLS and whether the client
// must log in with SASL.
type Security string

// The security protocols of a listener.
const (
	Plaintext     Security = "plaintext"
	SSL           Security = "ssl"
	SASLPlaintext Security = "sasl_plaintext"
	SASLSSL       Security = "sasl_ssl"
)

// TLS reports whether connections on s are TLS.
func (s Security) TLS() bool { return s == SSL || s == SASLSSL }

// SASL reports whether clients on s must authenticate with SASL.
func (s Security) SASL() bool { return s == SASLPlaintext || s == SASLSSL }

// ListenerConfig is one Kafka listener: an address, what clients are told to
// dial, and how they are authenticated.
type ListenerConfig struct {
	// Name labels the listener in logs and metrics (Kafka's listener name).
	Name string
	// Addr is the host:port to listen on.
	Addr string
	// AdvertisedAddr is what Metadata and FindCoordinator tell clients that
	// arrived on this listener; empty means Addr (or the connection's local
	// address when Addr's host is unspecified).
	AdvertisedAddr string
	// Security is plaintext, ssl, sasl_plaintext or sasl_ssl.
	Security Security
	// TLS holds the certificate files of ssl and sasl_ssl listeners.
	TLS TLSConfig
	// Mechanisms are the SASL mechanisms offered; empty means PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512.
	Mechanisms []auth.Mechanism
}

// DefaultMechanisms are the SASL mechanisms a listener offers by default.
var DefaultMechanisms = []auth.Mechanism{auth.Plain, auth.ScramSHA256, auth.ScramSHA512}

// listener is one bound Kafka listener.
type listener struct {
	cfg     ListenerConfig
	ln      net.Listener
	advHost string // empty: use each connection's local address
	advPort int32
	tls     *tlsFiles // nil unless cfg.Security.TLS()
	tlsCfg  *tls.Config
}

// listen binds one listener and loads its certificates.
func listen(lc ListenerConfig, s *Server) (*listener, error) {
	if lc.Security == "" {
		lc.Security = Plaintext
	}
	switch lc.Security {
	case Plaintext, SSL, SASLPlaintext, SASLSSL:
	default:
		return nil, fmt.Errorf("kafka listener %s: security %q (allowed: plaintext, ssl, sasl_plaintext, sasl_ssl)", lc.Name, lc.Security)
	}
	if len(lc.Mechanisms) == 0 {
		lc.Mechanisms = DefaultMechanisms
	}
	if lc.Security.SASL() && s.cfg.Users == nil {
		return nil, fmt.Errorf("kafka listener %s: security %s needs a user store", lc.Name, lc.Security)
	}
	l := &listener{cfg: lc}
	if lc.Security.TLS() {
		tf, err := newTLSFiles(lc.TLS, s.log.With("listener", lc.Name))
		if err != nil {
			return nil, fmt.Errorf("kafka listener %s: %w", lc.Name, err)
		}
		l.tls, l.tlsCfg = tf, tf.serverConfig()
	}
	ln, err := net.Listen("tcp", lc.Addr)
	if err != nil {
		return nil, fmt.Errorf("kafka listener %s: %w", lc.Name, err)
	}
	l.ln = ln
	if err := l.setAdvertised(); err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// setAdvertised works out the host and port put into Metadata responses.
func (l *listener) setAdvertised() error {
	addr := l.cfg.AdvertisedAddr
	if addr == "" {
		addr = l.ln.Addr().String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("kafka listener %s: advertised address %q: %w", l.cfg.Name, addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("kafka listener %s: advertised address %q: bad port %q", l.cfg.Name, addr, port)
	}
	if ip := net.ParseIP(host); l.cfg.AdvertisedAddr == "" && (host == "" || ip != nil && ip.IsUnspecified()) {
		host = ""
	}
	l.advHost, l.advPort = host, int32(p)
	return nil
}

// offers reports whether the listener offers SASL mechanism m.
func (l *listener) offers(m string) bool {
	return slices.Contains(l.cfg.Mechanisms, auth.Mechanism(m))
}

// mechanismNames lists the offered SASL mechanisms for SaslHandshake.
func (l *listener) mechanismNames() []string {
	out := make([]string, len(l.cfg.Mechanisms))
	for i, m := range l.cfg.Mechanisms {
		out[i] = string(m)
	}
	return out
}

// listenerConfigs is cfg.Listeners, or the single plaintext listener of
// cfg.Addr when none are listed.
func (cfg *Config) listenerConfigs() []ListenerConfig {
	if len(cfg.Listeners) > 0 {
		return cfg.Listeners
	}
	return []ListenerConfig{{Name: "PLAINTEXT", Addr: cfg.Addr, AdvertisedAddr: cfg.AdvertisedAddr, Security: Plaintext}}
}

// ListenerAddr is the bound address of the listener called name, or nil.
func (s *Server) ListenerAddr(name string) net.Addr {
	for _, l := range s.lns {
		if l.cfg.Name == name {
			return l.ln.Addr()
		}
	}
	return nil
}
