package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Default topic names (the same centrally and at the edge).
const (
	DefaultManifestTopic = "firmware.manifests"
	DefaultChunkTopic    = "firmware.chunks"
	DefaultStatusTopic   = "firmware.status"
)

// RootKeyPrefix starts the manifest-topic key of a root version ("root/3"):
// every version is kept under compaction, so an edge pinned to an old root can
// walk the rotation chain. Artefact names cannot contain "/".
const RootKeyPrefix = "root/"

// RootKey is the manifest-topic record key of root version v.
func RootKey(v int) string { return RootKeyPrefix + strconv.Itoa(v) }

// ChunkKey is the chunk-topic record key of chunk i of name@version.
func ChunkKey(name, version string, i int) string {
	return name + "/" + version + "/" + strconv.Itoa(i)
}

// ParseChunkKey splits a chunk key into name, version and index.
func ParseChunkKey(k string) (name, version string, i int, err error) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 {
		return "", "", 0, fmt.Errorf("chunk key %q: want name/version/index", k)
	}
	i, err = strconv.Atoi(parts[2])
	if err != nil || i < 0 {
		return "", "", 0, fmt.Errorf("chunk key %q: index is not a number", k)
	}
	return parts[0], parts[1], i, nil
}

// HashHex is the hex sha256 of b.
func HashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// BuildOptions are what a publisher states about an artefact besides its bytes.
type BuildOptions struct {
	Name, Version string
	ChunkSize     int
	Selector      Selector
	Waves         []Wave
	Expires       time.Time
	Downgrade     bool
	Paused        bool
	Aborted       bool
	Revokes       []string
}

// BuildManifest reads the file at path once and returns its manifest (unsigned).
func BuildManifest(path string, o BuildOptions) (Manifest, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("open artefact: %w", err)
	}
	defer f.Close()
	m := Manifest{Type: TypeManifest, Name: o.Name, Version: o.Version, ChunkSize: o.ChunkSize, Selector: o.Selector,
		Waves: o.Waves, Created: time.Now().UTC().Truncate(time.Second), Expires: o.Expires.UTC().Truncate(time.Second), Downgrade: o.Downgrade,
		Paused: o.Paused, Aborted: o.Aborted, Revokes: o.Revokes}
	whole := sha256.New()
	buf := make([]byte, o.ChunkSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 || (m.Size == 0 && len(m.Chunks) == 0 && n == 0 && err == io.EOF) {
			whole.Write(buf[:n])
			m.Chunks = append(m.Chunks, HashHex(buf[:n]))
			m.Size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("read artefact %s: %w", path, err)
		}
	}
	m.SHA256 = hex.EncodeToString(whole.Sum(nil))
	return m, m.Check()
}

// HashReader returns the hex sha256 of everything r yields.
func HashReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
