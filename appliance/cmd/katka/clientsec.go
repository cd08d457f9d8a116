package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// clientSecurity are the flags that make a Kafka CLI command speak TLS and
// SASL, with Kafka's client property names where there is one. The password
// never comes from a flag (flags show in ps): it is read from
// $KATKA_SASL_PASSWORD or the first line of --sasl-password-file.
type clientSecurity struct {
	protocol     string // security.protocol
	mechanism    string // sasl.mechanism
	user         string
	passwordFile string
	caFile       string
	certFile     string
	keyFile      string
	serverName   string
}

func (f *clientSecurity) add(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.protocol, "security-protocol", "plaintext", "plaintext, ssl, sasl_plaintext or sasl_ssl (Kafka's security.protocol)")
	p.StringVar(&f.mechanism, "sasl-mechanism", "SCRAM-SHA-512", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	p.StringVar(&f.user, "sasl-user", "", "SASL user name")
	p.StringVar(&f.passwordFile, "sasl-password-file", "", "file whose first line is the SASL password (default: $KATKA_SASL_PASSWORD)")
	p.StringVar(&f.caFile, "tls-ca", "", "PEM file of CAs trusted for the broker's certificate (default: the system's)")
	p.StringVar(&f.certFile, "tls-cert", "", "PEM client certificate (mutual TLS)")
	p.StringVar(&f.keyFile, "tls-key", "", "PEM key of --tls-cert")
	p.StringVar(&f.serverName, "tls-server-name", "", "name checked in the broker's certificate (default: the host dialled)")
}

// opts turns the flags into kgo options.
func (f *clientSecurity) opts() ([]kgo.Opt, error) {
	proto := strings.ToLower(f.protocol)
	var out []kgo.Opt
	switch proto {
	case "", "plaintext":
		return nil, nil
	case "ssl", "sasl_ssl", "sasl_plaintext":
	default:
		return nil, fmt.Errorf("--security-protocol %q (allowed: plaintext, ssl, sasl_plaintext, sasl_ssl)", f.protocol)
	}
	if proto != "sasl_plaintext" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName}
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no PEM certificates", f.caFile)
			}
		}
		if f.certFile != "" || f.keyFile != "" {
			cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		out = append(out, kgo.Dialer((&tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}).DialContext))
	}
	if strings.HasPrefix(proto, "sasl_") {
		m, err := f.saslMechanism()
		if err != nil {
			return nil, err
		}
		out = append(out, kgo.SASL(m))
	}
	return out, nil
}

// saslMechanism builds the chosen SASL mechanism with the password.
func (f *clientSecurity) saslMechanism() (sasl.Mechanism, error) {
	if f.user == "" {
		return nil, fmt.Errorf("--sasl-user is needed for --security-protocol %s", f.protocol)
	}
	pw := os.Getenv("KATKA_SASL_PASSWORD")
	if f.passwordFile != "" {
		fh, err := os.Open(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--sasl-password-file: %w", err)
		}
		defer fh.Close()
		if pw, err = readPassword(bufio.NewReader(fh)); err != nil {
			return nil, fmt.Errorf("--sasl-password-file %s: %w", f.passwordFile, err)
		}
	}
	if pw == "" {
		return nil, fmt.Errorf("no SASL password: set $KATKA_SASL_PASSWORD or --sasl-password-file")
	}
	switch strings.ToUpper(f.mechanism) {
	case "PLAIN":
		return plain.Auth{User: f.user, Pass: pw}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: f.user, Pass: pw}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: f.user, Pass: pw}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("--sasl-mechanism %q (allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", f.mechanism)
}
