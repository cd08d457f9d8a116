package config

import (
	"fmt"
	"net"
	"strings"
)

// Auth configures who may log in and who is a super user (Kafka's
// super.users). SCRAM users themselves live in the data directory
// (<data_dir>/users.json), managed with `katka user` or kadm.
type Auth struct {
	// SuperUsers are principals allowed everything, e.g. ["User:admin"].
	SuperUsers []string `yaml:"super_users"`
	// AdminUser is the user AdminPasswordFile bootstraps; it is a super user.
	AdminUser string `yaml:"admin_user"`
	// AdminPasswordFile holds the bootstrap admin's password (first line). At
	// start, when AdminUser has no credentials yet, SCRAM-SHA-256 and -512
	// credentials are made from it. Empty: no bootstrap admin.
	AdminPasswordFile string `yaml:"admin_password_file"`
	// ScramIterations is the PBKDF2 iteration count of credentials katka
	// makes itself (bootstrap admin, `katka user add`): 4096..16384.
	ScramIterations int `yaml:"scram_iterations"`
}

// KafkaListener is one extra Kafka listener beside kafka.addr.
type KafkaListener struct {
	// Name labels the listener in logs and metrics; unique, not PLAINTEXT
	// (the name of kafka.addr's listener).
	Name string `yaml:"name"`
	// Addr is the listen address, host:port.
	Addr string `yaml:"addr"`
	// AdvertisedAddr is the host:port clients of this listener are told to
	// connect to; empty means Addr.
	AdvertisedAddr string `yaml:"advertised_addr"`
	// Security is plaintext, ssl, sasl_plaintext or sasl_ssl (Kafka's names).
	Security string `yaml:"security"`
	// Mechanisms are the SASL mechanisms offered; empty means PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512.
	Mechanisms []string `yaml:"mechanisms"`
	// TLS holds the certificates of ssl and sasl_ssl listeners.
	TLS ListenerTLS `yaml:"tls"`
	// AllowUnauthenticated lets a listener without authentication (plaintext,
	// or ssl without required client certificates) bind beyond loopback.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
}

// ListenerTLS names a TLS listener's PEM files (reloaded when they change)
// and how client certificates are used.
type ListenerTLS struct {
	// CertFile and KeyFile are the server certificate (chain) and its key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile holds the CAs trusted for client certificates.
	CAFile string `yaml:"ca_file"`
	// ClientAuth is Kafka's ssl.client.auth: none, requested or required.
	ClientAuth string `yaml:"client_auth"`
	// Principal maps a client certificate to a principal: cn (User:<CN>) or
	// dn (User:<full subject DN>), as Kafka's ssl.principal.mapping.rules.
	Principal string `yaml:"principal"`
}

var (
	securityProtocols = []string{"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"}
	clientAuthModes   = []string{"none", "requested", "required"}
	principalMappings = []string{"cn", "dn"}
	saslMechanisms    = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
)

func defaultAuth() Auth {
	return Auth{AdminUser: "admin", ScramIterations: 4096}
}

// BeyondLoopback reports whether a listen address may take connections from
// other hosts: anything but a loopback IP or "localhost" (an empty host binds
// every interface, and another name may resolve beyond loopback). An empty
// or malformed address is false: it is disabled or reported elsewhere.
func BeyondLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Authenticated reports whether clients of l must authenticate: SASL, or TLS
// with required client certificates.
func (l KafkaListener) Authenticated() bool {
	return strings.HasPrefix(l.Security, "sasl_") || l.Security == "ssl" && l.TLS.ClientAuth == "required"
}

// HTTPAuthenticated reports whether the HTTP listener demands credentials.
// Bearer tokens (issue 14, point 5) make it true; until they are configured
// it is false and a non-loopback http.addr needs http.allow_unauthenticated.
var HTTPAuthenticated = func(c *Config) bool { return false }

// security checks kafka.listeners, auth and the refusal of unauthenticated
// listeners beyond loopback.
func (v *validator) security(c *Config) {
	if BeyondLoopback(c.Kafka.Addr) && !c.Kafka.AllowUnauthenticated {
		v.add("kafka.addr", "%q is a plaintext listener beyond loopback without authentication; set kafka.allow_unauthenticated: true to allow it, or serve clients on a kafka.listeners entry with security sasl_ssl (and kafka.addr on 127.0.0.1 or \"\")", c.Kafka.Addr)
	}
	if BeyondLoopback(c.HTTP.Addr) && !c.HTTP.AllowUnauthenticated && !HTTPAuthenticated(c) {
		v.add("http.addr", "%q listens beyond loopback without authentication; set http.allow_unauthenticated: true to allow it", c.HTTP.Addr)
	}
	names := map[string]string{}
	if c.Kafka.Addr != "" {
		names["PLAINTEXT"] = "kafka.addr"
	}
	for i, l := range c.Kafka.Listeners {
		p := fmt.Sprintf("kafka.listeners[%d]", i)
		switch first, dup := names[l.Name]; {
		case l.Name == "":
			v.add(p+".name", "must not be empty (e.g. SASL_SSL)")
		case dup:
			v.add(p+".name", "%q is already used by %s (listener names must be unique)", l.Name, first)
		default:
			names[l.Name] = p
		}
		if l.Addr == "" {
			v.add(p+".addr", "must not be empty (e.g. 0.0.0.0:9093)")
		} else {
			v.listenAddr(p+".addr", l.Addr)
		}
		v.advertisedAddr(p+".advertised_addr", l.AdvertisedAddr)
		v.oneOf(p+".security", l.Security, securityProtocols)
		for j, m := range l.Mechanisms {
			v.oneOf(fmt.Sprintf("%s.mechanisms[%d]", p, j), m, saslMechanisms)
		}
		tlsOn := l.Security == "ssl" || l.Security == "sasl_ssl"
		t := l.TLS
		if tlsOn {
			if t.CertFile == "" {
				v.add(p+".tls.cert_file", "must be set for security %s (a PEM certificate)", l.Security)
			}
			if t.KeyFile == "" {
				v.add(p+".tls.key_file", "must be set for security %s (a PEM private key)", l.Security)
			}
			if t.ClientAuth != "" {
				v.oneOf(p+".tls.client_auth", t.ClientAuth, clientAuthModes)
			}
			if t.ClientAuth != "" && t.ClientAuth != "none" && t.CAFile == "" {
				v.add(p+".tls.ca_file", "must be set when tls.client_auth is %s (the CA of client certificates)", t.ClientAuth)
			}
			if t.Principal != "" {
				v.oneOf(p+".tls.principal", t.Principal, principalMappings)
			}
		} else if t != (ListenerTLS{}) {
			v.add(p+".tls", "is set but security is %q (use ssl or sasl_ssl)", l.Security)
		}
		if BeyondLoopback(l.Addr) && !l.Authenticated() && !l.AllowUnauthenticated {
			v.add(p+".allow_unauthenticated", "listener %q on %q has no authentication beyond loopback; set kafka.listeners[%d].allow_unauthenticated: true to allow it, or security: sasl_ssl", l.Name, l.Addr, i)
		}
	}
	a := c.Auth
	for i, s := range a.SuperUsers {
		typ, name, ok := strings.Cut(s, ":")
		if !ok || typ != "User" || name == "" {
			v.add(fmt.Sprintf("auth.super_users[%d]", i), "%q is not a principal (e.g. User:admin)", s)
		}
	}
	if a.AdminPasswordFile != "" && a.AdminUser == "" {
		v.add("auth.admin_user", "must be set when auth.admin_password_file is (e.g. admin)")
	}
	if a.ScramIterations < 4096 || a.ScramIterations > 16384 {
		v.add("auth.scram_iterations", "%d is out of range (allowed: 4096..16384)", a.ScramIterations)
	}
}
