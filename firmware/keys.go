// Package firmware is katka's signed firmware format: a manifest (name, version,
// size, sha256, per-chunk sha256, selector, waves, expiry) signed with ed25519 by
// a key the root of trust lists, the root itself rotated by signature, and the
// checks an edge applies before it serves anything (signature, expiry,
// anti-rollback, chunk and whole-artefact hashes). Artefacts travel as Kafka
// records: manifests in a compacted topic keyed by artefact name, chunks in a
// chunk topic keyed by artefact, version and index, so any Kafka cluster and
// katka's sync downlink can carry them.
package firmware

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyID names a public key: the hex sha256 of its 32 raw bytes, so a manifest's
// signature says which root-listed key made it without carrying the key.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:])
}

// GenerateKey makes a new ed25519 key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// WriteKeyPair writes priv as PEM PKCS#8 to path (mode 0600, refusing to
// overwrite) and its public key as PEM PKIX to path's base name + ".pub", the
// formats openssl reads (`openssl pkey -in targets.key -text`).
func WriteKeyPair(path string, priv ed25519.PrivateKey) (pubPath string, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("encode private key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write private key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return "", fmt.Errorf("write private key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write private key %s: %w", path, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	pubPath = trimExt(path) + ".pub"
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", fmt.Errorf("write public key: %w", err)
	}
	return pubPath, nil
}

func trimExt(p string) string { return p[:len(p)-len(filepath.Ext(p))] }

// ReadPrivateKey reads a PEM PKCS#8 ed25519 private key (WriteKeyPair's format).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("private key %s: no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key %s: %T is not ed25519", path, k)
	}
	return priv, nil
}

// ReadPublicKey reads a PEM PKIX ed25519 public key (WriteKeyPair's .pub file).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key %s: no PEM \"PUBLIC KEY\" block", path)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("public key " + path + " is not ed25519")
	}
	return pub, nil
}
