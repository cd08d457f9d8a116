package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files of a cell CA directory (katka cell init) and of a node bundle
// (katka cell issue).
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
	SecretFile   = "cell.secret"
	// nextIDFile in a CA directory holds the next node id to issue.
	nextIDFile = "next-node-id"
)

// MaxNodeID bounds node ids: they are Kafka broker ids (int32) and raft server ids.
const MaxNodeID = 1 << 20

// ErrCredential marks a credential that is missing, malformed or of another cell.
var ErrCredential = errors.New("cell credential")

// InitCA creates a new cell CA in dir: an ECDSA P-256 key and a self-signed
// certificate naming the cell, plus the cell secret that keys the mDNS
// announcement MAC. It refuses to overwrite an existing CA.
func InitCA(dir, cell string) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%w: %s already holds a cell CA", ErrCredential, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cell init: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("cell init: key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "katka cell " + cell + " CA", Organization: []string{"katka"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{cellURI(cell)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("cell init: certificate: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("cell init: secret: %w", err)
	}
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		CACertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		SecretFile: []byte(hex.EncodeToString(secret) + "\n"),
		nextIDFile: []byte("1\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("cell init: %w", err)
		}
	}
	return nil
}

// IssueNode issues a node bundle into outDir from the CA in caDir: a fresh key,
// a certificate for node id (the CA's next free id when id < 0), the CA
// certificate and the cell secret. It returns the node id issued.
func IssueNode(caDir string, id int32, outDir string) (int32, error) {
	caCert, caKey, err := loadCA(caDir)
	if err != nil {
		return 0, err
	}
	cell, err := cellOf(caCert)
	if err != nil {
		return 0, err
	}
	next := int32(1)
	if b, err := os.ReadFile(filepath.Join(caDir, nextIDFile)); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32); err == nil && n > 0 {
			next = int32(n)
		}
	}
	if id < 0 {
		id = next
	}
	if id > MaxNodeID {
		return 0, fmt.Errorf("%w: node id %d is out of range (allowed: 0..%d)", ErrCredential, id, MaxNodeID)
	}
	secret, err := os.ReadFile(filepath.Join(caDir, SecretFile))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, fmt.Errorf("cell issue: key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("katka-node-%d", id), Organization: []string{"katka"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{nodeURI(cell, id)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return 0, fmt.Errorf("cell issue: certificate: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return 0, fmt.Errorf("cell issue: %w", err)
	}
	if err := writeKey(filepath.Join(outDir, NodeKeyFile), key); err != nil {
		return 0, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	for name, data := range map[string][]byte{
		NodeCertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CACertFile:   caPEM,
		SecretFile:   secret,
	} {
		if err := os.WriteFile(filepath.Join(outDir, name), data, 0o600); err != nil {
			return 0, fmt.Errorf("cell issue: %w", err)
		}
	}
	if id >= next {
		if err := os.WriteFile(filepath.Join(caDir, nextIDFile), []byte(strconv.Itoa(int(id)+1)+"\n"), 0o600); err != nil {
			return 0, fmt.Errorf("cell issue: %w", err)
		}
	}
	return id, nil
}

// Credential is one node's proof of membership: its certificate and key, the
// cell CA it trusts and the cell secret for announcements.
type Credential struct {
	// Cell is the cell name written in the certificates.
	Cell string
	// NodeID is this node's id from its certificate.
	NodeID int32
	// Secret keys the MAC of mDNS announcements.
	Secret []byte
	// CAFingerprint is the SHA-256 of the CA certificate, hex.
	CAFingerprint string

	cert tls.Certificate
	pool *x509.CertPool
}

// LoadCredential reads a node bundle written by IssueNode.
func LoadCredential(dir string) (*Credential, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no PEM certificate", ErrCredential, CACertFile)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCredential, CACertFile, err)
	}
	secretHex, err := os.ReadFile(filepath.Join(dir, SecretFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(secretHex)))
	if err != nil || len(secret) < 16 {
		return nil, fmt.Errorf("%w: %s: not a hex secret of 16 bytes or more", ErrCredential, SecretFile)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCredential, NodeCertFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: %s is not signed by %s: %v", ErrCredential, NodeCertFile, CACertFile, err)
	}
	cell, id, err := nodeOf(leaf)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(ca.Raw)
	return &Credential{Cell: cell, NodeID: id, Secret: secret, CAFingerprint: hex.EncodeToString(sum[:]), cert: cert, pool: pool}, nil
}

// ServerTLS is the peer listener's TLS config: TLS 1.3 only, a client
// certificate of this cell required, the given ALPN protocols offered.
func (c *Credential) ServerTLS(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{c.cert},
		ClientAuth:            tls.RequireAndVerifyClientCert,
		ClientCAs:             c.pool,
		NextProtos:            protos,
		VerifyPeerCertificate: c.verifyPeer(x509.ExtKeyUsageClientAuth),
	}
}

// ClientTLS is the TLS config for dialling a peer: TLS 1.3, this node's
// certificate, and the peer's certificate checked against the cell CA and the
// cell name (peers are dialled by address, so no host name is checked).
func (c *Credential) ClientTLS(proto string) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{c.cert},
		InsecureSkipVerify:    true, // replaced by verifyPeer: chain to the cell CA + cell name
		NextProtos:            []string{proto},
		VerifyPeerCertificate: c.verifyPeer(x509.ExtKeyUsageServerAuth),
	}
}

// verifyPeer checks a peer's chain against the cell CA and that it names this cell.
func (c *Credential) verifyPeer(usage x509.ExtKeyUsage) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("%w: peer sent no certificate", ErrCredential)
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("%w: peer certificate: %v", ErrCredential, err)
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if ic, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(ic)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("%w: peer certificate not from this cell's CA: %v", ErrCredential, err)
		}
		cell, _, err := nodeOf(leaf)
		if err != nil {
			return err
		}
		if cell != c.Cell {
			return fmt.Errorf("%w: peer belongs to cell %q, not %q", ErrCredential, cell, c.Cell)
		}
		return nil
	}
}

// PeerNodeID returns the node id named by the verified peer certificate of a
// TLS connection.
func PeerNodeID(st tls.ConnectionState) (int32, error) {
	if len(st.PeerCertificates) == 0 {
		return 0, fmt.Errorf("%w: no peer certificate", ErrCredential)
	}
	_, id, err := nodeOf(st.PeerCertificates[0])
	return id, err
}

func cellURI(cell string) *url.URL { return &url.URL{Scheme: "katka", Host: cell} }

func nodeURI(cell string, id int32) *url.URL {
	return &url.URL{Scheme: "katka", Host: cell, Path: "/node/" + strconv.Itoa(int(id))}
}

// cellOf reads the cell name from a CA certificate.
func cellOf(ca *x509.Certificate) (string, error) {
	for _, u := range ca.URIs {
		if u.Scheme == "katka" && u.Host != "" {
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("%w: CA certificate names no katka cell", ErrCredential)
}

// nodeOf reads the cell name and node id from a node certificate.
func nodeOf(cert *x509.Certificate) (string, int32, error) {
	for _, u := range cert.URIs {
		if u.Scheme != "katka" || !strings.HasPrefix(u.Path, "/node/") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(u.Path, "/node/"), 10, 32)
		if err != nil || n < 0 || n > MaxNodeID {
			break
		}
		return u.Host, int32(n), nil
	}
	return "", 0, fmt.Errorf("%w: certificate names no katka node", ErrCredential)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCredential, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v (issuing needs the CA directory from katka cell init)", ErrCredential, err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%w: %s: malformed PEM", ErrCredential, dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrCredential, CACertFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrCredential, CAKeyFile, err)
	}
	return cert, key, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
