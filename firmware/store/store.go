// Package store is katka's edge firmware store: it reads signed manifests and
// chunks from local topics (mirrored down from the central cluster by the sync
// downlink), verifies every chunk and the whole artefact against a manifest
// signed under the pinned root of trust, keeps verified artefacts under a disk
// quota (oldest-unused evicted first), serves them to devices over HTTP with
// Range and ETag, announces them over MQTT and writes device feedback into a
// status topic. After a restart (SIGKILL included) it re-hashes the partial
// files and continues with the first missing chunk.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/firmware"
)

// Artefact states.
const (
	StateDownloading = "downloading"
	StateAvailable   = "available"
	StateEvicted     = "evicted"
	StateRevoked     = "revoked"
)

// maxOrphans bounds the artefacts remembered as having chunks before their
// manifest (more are read again only at the next start).
const maxOrphans = 1024

// maxRejections bounds the rejections kept for the status (oldest dropped).
const maxRejections = 200

// Options configure a Store.
type Options struct {
	Broker *broker.Broker
	Config config.Firmware
	// DataDir is katka's data dir (the store defaults to <DataDir>/firmware).
	DataDir string
	// HTTPAddr is katka's HTTP listener, for announcement URLs without base_url.
	HTTPAddr   string
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// artefact is one accepted manifest and its file.
type artefact struct {
	m        firmware.Manifest
	env      []byte // the signed envelope as received
	have     []bool
	nhave    int
	state    string
	lastUsed time.Time
	file     *os.File // open while downloading
	rejected string   // last chunk rejection reason (still downloading)
}

func (a *artefact) id() string { return a.m.Name + "/" + a.m.Version }

// Rejection is one rejected manifest, root or chunk, as the status shows it.
type Rejection struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // manifest, root, chunk, artefact
	Name    string    `json:"name,omitempty"`
	Version string    `json:"version,omitempty"`
	Chunk   *int      `json:"chunk,omitempty"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail"`
	// Key identifies the rejected input (so it is counted and logged once,
	// across restarts too).
	Key string `json:"key"`
}

// persisted is state.json: what must survive a restart beyond the files.
type persisted struct {
	// Highest is the highest version accepted per name (anti-rollback).
	Highest map[string]string `json:"highest"`
	// Artefacts are the accepted ones by name/version.
	Artefacts map[string]persistedArtefact `json:"artefacts"`
	Rejected  []Rejection                  `json:"rejected"`
	// Revoked maps name/version to what revoked it.
	Revoked map[string]string `json:"revoked,omitempty"`
}

type persistedArtefact struct {
	State    string    `json:"state"`
	LastUsed time.Time `json:"last_used"`
}

// Store is the firmware store; Run drives it, the HTTP handlers and Status
// read it concurrently.
type Store struct {
	o     Options
	dir   string
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	trust *firmware.Trust

	mu        sync.RWMutex
	arts      map[string]*artefact // name/version
	highest   map[string]string
	rejected  []Rejection
	seen      map[string]bool   // rejection keys
	revoked   map[string]string // name/version -> what revoked it
	manOff    int64
	chunkOff  int64
	orphans   map[string]int64 // name/version -> first chunk offset seen before its manifest
	announcer *announcer
	changed   chan struct{} // wakes the announcer
	subMu     sync.Mutex
	subs      []chan struct{} // Subscribe
}

// New opens the store: the pinned root, state.json and partial files (each
// re-hashed to find the chunks present), and creates the local topics.
func New(o Options) (*Store, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := o.Config
	dir := c.Dir
	if dir == "" {
		dir = filepath.Join(o.DataDir, "firmware")
	}
	s := &Store{o: o, dir: dir, log: o.Log.With("component", "firmware"), now: o.Now, arts: map[string]*artefact{},
		highest: map[string]string{}, seen: map[string]bool{}, revoked: map[string]string{}, orphans: map[string]int64{}, changed: make(chan struct{}, 1)}
	s.m = newMetrics(o.Registerer)
	data, err := os.ReadFile(c.RootFile)
	if err != nil {
		return nil, fmt.Errorf("firmware.root_file: %w", err)
	}
	env, err := firmware.ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("firmware.root_file %s: %w", c.RootFile, err)
	}
	if s.trust, err = firmware.NewTrust(env); err != nil {
		return nil, fmt.Errorf("firmware.root_file %s: %w", c.RootFile, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("firmware dir: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		name string
		cfg  broker.TopicConfig
	}{{c.ManifestTopic, broker.TopicConfig{CleanupPolicy: "compact"}}, {c.ChunkTopic, broker.TopicConfig{}}, {c.StatusTopic, broker.TopicConfig{}}} {
		if _, err := o.Broker.Topic(t.name); err == nil {
			continue
		}
		if _, err := o.Broker.CreateTopic(t.name, 1, t.cfg); err != nil && !errors.Is(err, broker.ErrTopicExists) {
			return nil, fmt.Errorf("firmware topic %s: %w", t.name, err)
		}
	}
	s.refreshGauges()
	return s, nil
}

func (s *Store) statePath() string { return filepath.Join(s.dir, "state.json") }

func (s *Store) artDir(name, version string) string { return filepath.Join(s.dir, name, version) }

// load reads state.json and the manifests and files of accepted artefacts.
func (s *Store) load() error {
	var p persisted
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("firmware state: %w", err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("firmware state %s: %w", s.statePath(), err)
	}
	if p.Highest != nil {
		s.highest = p.Highest
	}
	s.rejected = p.Rejected
	if p.Revoked != nil {
		s.revoked = p.Revoked
	}
	for _, r := range p.Rejected {
		s.seen[r.Key] = true
	}
	for id, pa := range p.Artefacts {
		if pa.State == StateEvicted || pa.State == StateRevoked {
			s.arts[id] = &artefact{state: pa.State, m: firmware.Manifest{Name: filepath.Dir(id), Version: filepath.Base(id)}}
			continue
		}
		envData, err := os.ReadFile(filepath.Join(s.dir, id, "manifest.json"))
		if err != nil {
			s.log.Warn("firmware artefact without its manifest; it will be fetched again", "artefact", id, "err", err)
			continue
		}
		var env firmware.Envelope
		var m firmware.Manifest
		if err := json.Unmarshal(envData, &env); err == nil {
			err = json.Unmarshal(env.Signed, &m)
		}
		if err != nil || m.Check() != nil {
			s.log.Warn("firmware artefact with a damaged manifest; it will be fetched again", "artefact", id, "err", err)
			continue
		}
		a := &artefact{m: m, env: envData, state: pa.State, lastUsed: pa.LastUsed, have: make([]bool, len(m.Chunks))}
		if a.state == StateAvailable {
			if _, err := os.Stat(filepath.Join(s.dir, id, "data")); err != nil {
				s.log.Warn("available firmware artefact lost its file; fetching it again", "artefact", id, "err", err)
				a.state = StateDownloading
			}
		}
		if a.state == StateDownloading {
			if err := s.openPartial(a); err != nil {
				return err
			}
		} else {
			for i := range a.have {
				a.have[i] = true
			}
			a.nhave = len(a.have)
		}
		s.arts[id] = a
	}
	return nil
}

// openPartial opens a's data file (creating it at full size) and hashes every
// chunk in it, so a download resumes at the first chunk missing after a crash:
// a chunk written but not flushed fails its hash and is fetched again.
func (s *Store) openPartial(a *artefact) error {
	d := s.artDir(a.m.Name, a.m.Version)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("firmware artefact dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(d, "data.part"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("firmware artefact file: %w", err)
	}
	if err := f.Truncate(a.m.Size); err != nil {
		f.Close()
		return fmt.Errorf("firmware artefact file: %w", err)
	}
	buf := make([]byte, a.m.ChunkSize)
	a.nhave = 0
	for i := range a.m.Chunks {
		n := a.m.ChunkLen(i)
		if _, err := f.ReadAt(buf[:n], int64(i)*int64(a.m.ChunkSize)); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return fmt.Errorf("firmware artefact file %s: %w", a.id(), err)
		}
		if firmware.HashHex(buf[:n]) == a.m.Chunks[i] {
			a.have[i] = true
			a.nhave++
		}
	}
	a.file = f
	if a.nhave > 0 {
		s.log.Info("firmware download resumes", "artefact", a.id(), "chunks_present", a.nhave, "chunks", len(a.have), "first_missing", a.firstMissing())
	}
	return nil
}

func (a *artefact) firstMissing() int {
	for i, h := range a.have {
		if !h {
			return i
		}
	}
	return -1
}

// save writes state.json atomically (temp file, fsync, rename, dir fsync).
func (s *Store) save() {
	p := persisted{Highest: s.highest, Artefacts: map[string]persistedArtefact{}, Rejected: s.rejected, Revoked: s.revoked}
	for id, a := range s.arts {
		p.Artefacts[id] = persistedArtefact{State: a.state, LastUsed: a.lastUsed}
	}
	data, _ := json.MarshalIndent(p, "", " ")
	if err := writeFileSync(s.statePath(), data); err != nil {
		s.log.Error("saving firmware state", "err", err)
	}
}

func writeFileSync(path string, data []byte) error { return firmware.WriteFileSync(path, data) }

func syncDir(dir string) error { return firmware.SyncDir(dir) }

// rejectOnce records a rejection: logged, counted and kept for the status
// once per key, even across restarts.
func (s *Store) rejectOnce(r Rejection) {
	if s.seen[r.Key] {
		return
	}
	s.seen[r.Key] = true
	r.Time = s.now().UTC()
	s.rejected = append(s.rejected, r)
	if len(s.rejected) > maxRejections {
		delete(s.seen, s.rejected[0].Key)
		s.rejected = s.rejected[1:]
	}
	s.m.rejected.WithLabelValues(r.Reason).Inc()
	args := []any{"kind", r.Kind, "reason", r.Reason, "detail", r.Detail}
	if r.Name != "" {
		args = append(args, "name", r.Name, "version", r.Version)
	}
	if r.Chunk != nil {
		args = append(args, "chunk", *r.Chunk)
	}
	s.log.Warn("firmware rejected", args...)
	s.save()
}

// Run reads the manifest and chunk topics until ctx ends.
func (s *Store) Run(ctx context.Context) {
	if s.o.Config.MQTT.Broker != "" {
		s.announcer = newAnnouncer(s)
		done := make(chan struct{})
		go func() { s.announcer.run(ctx); close(done) }()
		defer func() { <-done }()
	}
	for ctx.Err() == nil {
		progressed, err := s.step(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("firmware store", "err", err)
		}
		if progressed && err == nil {
			continue
		}
		mch, err1 := s.o.Broker.Notify(s.o.Config.ManifestTopic, 0)
		cch, err2 := s.o.Broker.Notify(s.o.Config.ChunkTopic, 0)
		if err1 != nil || err2 != nil {
			mch, cch = nil, nil
		}
		// Recheck after arming: a record written between step and Notify.
		if p, err := s.step(ctx); p && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-mch:
		case <-cch:
		case <-time.After(time.Second):
		}
	}
	s.mu.Lock()
	for _, a := range s.arts {
		if a.file != nil {
			a.file.Sync()
			a.file.Close()
			a.file = nil
		}
	}
	s.mu.Unlock()
}

// step reads what is new in the manifest topic, then a batch of chunks. It
// reports whether it consumed anything.
func (s *Store) step(ctx context.Context) (bool, error) {
	n, err := s.readManifests(ctx)
	if err != nil {
		return false, err
	}
	c, err := s.readChunks(ctx)
	return n+c > 0, err
}

func (s *Store) fetch(ctx context.Context, topic string, off *int64, maxBytes int) ([]broker.Record, error) {
	res, err := s.o.Broker.Fetch(ctx, topic, 0, *off, maxBytes, 0)
	if errors.Is(err, broker.ErrOffsetOutOfRange) {
		if *off < res.LogStartOffset {
			s.log.Warn("firmware topic records deleted before they were read", "topic", topic, "from", *off, "log_start", res.LogStartOffset)
			*off = res.LogStartOffset
			return nil, nil
		}
		if *off > res.HighWatermark { // topic recreated
			*off = res.LogStartOffset
			return nil, nil
		}
	}
	if errors.Is(err, broker.ErrCorrupt) {
		// A record damaged on disk is never data: skip it (its artefact
		// misses a chunk and waits for another copy).
		s.log.Error("firmware topic record damaged on disk; skipped", "topic", topic, "offset", *off, "err", err)
		*off++
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return res.Records, nil
}

func (s *Store) readManifests(ctx context.Context) (int, error) {
	total := 0
	for {
		recs, err := s.fetch(ctx, s.o.Config.ManifestTopic, &s.manOff, 8<<20)
		if err != nil || len(recs) == 0 {
			return total, err
		}
		s.mu.Lock()
		for _, r := range recs {
			s.manOff = r.Offset + 1
			if r.Value == nil { // tombstone
				continue
			}
			s.handleManifest(string(r.Key), r.Value)
		}
		s.mu.Unlock()
		total += len(recs)
	}
}

// handleManifest verifies one manifest-topic record (a root or a manifest).
func (s *Store) handleManifest(key string, val []byte) {
	recKey := "manifest:" + firmware.HashHex(val)
	if len(key) > len(firmware.RootKeyPrefix) && key[:len(firmware.RootKeyPrefix)] == firmware.RootKeyPrefix {
		env, err := firmware.ParseEnvelope(val)
		var ok bool
		if err == nil {
			ok, err = s.trust.Update(env)
		}
		if err != nil {
			s.rejectOnce(Rejection{Kind: "root", Name: key, Reason: string(firmware.ReasonOf(err)), Detail: err.Error(), Key: recKey})
			return
		}
		if ok {
			s.log.Info("firmware root of trust rotated", "version", s.trust.Root().Version)
		}
		return
	}
	env, err := firmware.ParseEnvelope(val)
	if err != nil {
		s.rejectOnce(Rejection{Kind: "manifest", Name: key, Reason: string(firmware.ReasonOf(err)), Detail: err.Error(), Key: recKey})
		return
	}
	m, err := s.trust.VerifyManifest(env, s.now())
	if err == nil && m.Name != key {
		err = &firmware.Rejection{Reason: firmware.ReasonMalformed, Detail: fmt.Sprintf("manifest for %q under key %q", m.Name, key)}
	}
	id := m.Name + "/" + m.Version
	if err == nil && m.Aborted {
		s.revoke(id, fmt.Sprintf("aborted by its publisher (manifest created %s)", m.Created.Format(time.RFC3339)))
		s.applyRevokes(m)
		return
	}
	if by, ok := s.revoked[id]; ok && err == nil {
		err = &firmware.Rejection{Reason: firmware.ReasonRevoked, Detail: fmt.Sprintf("%s was revoked: %s", id, by)}
	}
	if a, ok := s.arts[id]; ok && err == nil {
		switch {
		case a.state == StateEvicted:
			return
		case a.m.SHA256 != m.SHA256:
			err = &firmware.Rejection{Reason: firmware.ReasonConflict, Detail: fmt.Sprintf("%s already accepted with sha256 %s", id, a.m.SHA256)}
		default:
			// The same artefact signed again (e.g. a later expiry, new
			// waves): adopt the newer manifest when the chunks are the same.
			if m.Created.After(a.m.Created) && m.ChunkSize == a.m.ChunkSize && slices.Equal(m.Chunks, a.m.Chunks) {
				if werr := writeFileSync(filepath.Join(s.artDir(m.Name, m.Version), "manifest.json"), val); werr == nil {
					a.m, a.env = m, val
					s.log.Info("firmware manifest re-signed", "artefact", id, "expires", m.Expires, "paused", m.Paused)
					s.applyRevokes(m)
					s.notifyAnnouncer()
				}
			}
			return
		}
	}
	if err == nil {
		if h, ok := s.highest[m.Name]; ok && firmware.CompareVersions(m.Version, h) < 0 && !m.Downgrade {
			err = &firmware.Rejection{Reason: firmware.ReasonDowngrade, Detail: fmt.Sprintf("version %s is below %s, already accepted, and the manifest is not signed as an intended downgrade", m.Version, h)}
		}
	}
	if err == nil && m.Size > int64(s.o.Config.Quota) {
		err = &firmware.Rejection{Reason: firmware.ReasonOverQuota, Detail: fmt.Sprintf("%d bytes, quota %d (firmware.quota)", m.Size, int64(s.o.Config.Quota))}
	}
	if err == nil {
		err = s.makeRoom(m.Size)
	}
	if err != nil {
		s.rejectOnce(Rejection{Kind: "manifest", Name: m.Name, Version: m.Version, Reason: string(firmware.ReasonOf(err)), Detail: err.Error(), Key: recKey})
		return
	}
	a := &artefact{m: m, env: val, state: StateDownloading, have: make([]bool, len(m.Chunks)), lastUsed: s.now().UTC()}
	if err := os.MkdirAll(s.artDir(m.Name, m.Version), 0o755); err == nil {
		err = writeFileSync(filepath.Join(s.artDir(m.Name, m.Version), "manifest.json"), val)
	}
	if err == nil {
		err = s.openPartial(a)
	}
	if err != nil {
		s.log.Error("firmware artefact cannot be stored", "artefact", id, "err", err)
		return
	}
	s.arts[id] = a
	if h, ok := s.highest[m.Name]; !ok || firmware.CompareVersions(m.Version, h) > 0 {
		s.highest[m.Name] = m.Version
	}
	s.applyRevokes(m)
	s.save()
	s.log.Info("firmware manifest accepted", "artefact", id, "size", m.Size, "chunks", len(m.Chunks), "sha256", m.SHA256, "downgrade", m.Downgrade)
	if off, ok := s.orphans[id]; ok {
		delete(s.orphans, id)
		s.chunkOff = min(s.chunkOff, off)
	}
	if a.nhave == len(a.have) {
		s.complete(a)
	}
	s.refreshGauges()
}

// applyRevokes revokes the versions m lists.
func (s *Store) applyRevokes(m firmware.Manifest) {
	for _, v := range m.Revokes {
		if v != m.Version {
			s.revoke(m.Name+"/"+v, fmt.Sprintf("revoked by %s %s", m.Name, m.Version))
		}
	}
}

// revoke deletes an artefact (if held) and keeps it from ever being served.
func (s *Store) revoke(id, by string) {
	if _, ok := s.revoked[id]; ok {
		return
	}
	s.revoked[id] = by
	if a, ok := s.arts[id]; ok && a.state != StateEvicted && a.state != StateRevoked {
		if a.file != nil {
			a.file.Close()
			a.file = nil
		}
		if err := os.RemoveAll(s.artDir(a.m.Name, a.m.Version)); err != nil {
			s.log.Error("removing revoked firmware artefact", "artefact", id, "err", err)
		}
		a.state, a.have = StateRevoked, nil
	}
	s.log.Warn("firmware artefact revoked", "artefact", id, "by", by)
	s.save()
	s.refreshGauges()
	s.notifyAnnouncer()
}

// usedBytes is the size of every artefact kept (partial ones at full size).
func (s *Store) usedBytes() int64 {
	var n int64
	for _, a := range s.arts {
		if a.state == StateDownloading || a.state == StateAvailable {
			n += a.m.Size
		}
	}
	return n
}

// makeRoom evicts available artefacts, least recently used first, until size
// more bytes fit under the quota.
func (s *Store) makeRoom(size int64) error {
	quota := int64(s.o.Config.Quota)
	for s.usedBytes()+size > quota {
		var victim *artefact
		for _, a := range s.arts {
			if a.state == StateAvailable && (victim == nil || a.lastUsed.Before(victim.lastUsed)) {
				victim = a
			}
		}
		if victim == nil {
			return &firmware.Rejection{Reason: firmware.ReasonOverQuota, Detail: fmt.Sprintf("%d bytes do not fit: %d of %d in use by downloads (firmware.quota)", size, s.usedBytes(), quota)}
		}
		s.evict(victim)
	}
	return nil
}

func (s *Store) evict(a *artefact) {
	if err := os.RemoveAll(s.artDir(a.m.Name, a.m.Version)); err != nil {
		s.log.Error("evicting firmware artefact", "artefact", a.id(), "err", err)
	}
	a.state = StateEvicted
	a.have = nil
	s.m.evicted.Inc()
	s.log.Info("firmware artefact evicted (oldest unused) to stay under the quota", "artefact", a.id(), "size", a.m.Size, "last_used", a.lastUsed)
	s.save()
	s.notifyAnnouncer()
}

func (s *Store) readChunks(ctx context.Context) (int, error) {
	recs, err := s.fetch(ctx, s.o.Config.ChunkTopic, &s.chunkOff, 16<<20)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	caughtUp := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		name, version, i, err := firmware.ParseChunkKey(string(r.Key))
		if err != nil {
			s.rejectOnce(Rejection{Kind: "chunk", Reason: string(firmware.ReasonMalformed), Detail: err.Error(), Key: fmt.Sprintf("chunkrec:%d", r.Offset)})
			s.chunkOff = r.Offset + 1
			continue
		}
		id := name + "/" + version
		a, ok := s.arts[id]
		if !ok && !caughtUp {
			// The downlink may write a chunk before its manifest: read the
			// manifest topic to its end before deciding it has none.
			s.mu.Unlock()
			_, err := s.readManifests(ctx)
			s.mu.Lock()
			if err != nil {
				return 0, err
			}
			caughtUp = true
			a, ok = s.arts[id]
		}
		if !ok {
			if _, seen := s.orphans[id]; !seen && len(s.orphans) < maxOrphans {
				s.orphans[id] = r.Offset
			}
			s.chunkOff = r.Offset + 1
			continue
		}
		s.chunkOff = r.Offset + 1
		if a.state != StateDownloading || i >= len(a.have) || a.have[i] {
			continue
		}
		if h := firmware.HashHex(r.Value); h != a.m.Chunks[i] || len(r.Value) != a.m.ChunkLen(i) {
			ci := i
			a.rejected = string(firmware.ReasonChunkHash)
			s.rejectOnce(Rejection{Kind: "chunk", Name: name, Version: version, Chunk: &ci, Reason: string(firmware.ReasonChunkHash),
				Detail: fmt.Sprintf("chunk %d: sha256 %s (%d bytes), manifest says %s (%d bytes); waiting for a good copy", i, h, len(r.Value), a.m.Chunks[i], a.m.ChunkLen(i)),
				Key:    "chunk:" + id + ":" + h})
			continue
		}
		if _, err := a.file.WriteAt(r.Value, int64(i)*int64(a.m.ChunkSize)); err != nil {
			return len(recs), fmt.Errorf("write firmware chunk %s %d: %w", id, i, err)
		}
		a.have[i] = true
		a.nhave++
		s.m.chunks.Inc()
		s.m.bytes.Add(float64(len(r.Value)))
		if a.nhave == len(a.have) {
			s.complete(a)
		}
	}
	return len(recs), nil
}

// complete checks the whole file against the manifest and makes it available.
func (s *Store) complete(a *artefact) {
	d := s.artDir(a.m.Name, a.m.Version)
	f := a.file
	a.file = nil
	err := f.Sync()
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	var sum string
	var size int64
	if err == nil {
		sum, size, err = hashReader(f)
	}
	f.Close()
	if err != nil {
		s.log.Error("firmware artefact check", "artefact", a.id(), "err", err)
		return
	}
	if sum != a.m.SHA256 || size != a.m.Size {
		// Every chunk matched, so the manifest's chunk list disagrees with
		// its own sha256: the artefact can never become good.
		s.rejectOnce(Rejection{Kind: "artefact", Name: a.m.Name, Version: a.m.Version, Reason: string(firmware.ReasonArtefactHash),
			Detail: fmt.Sprintf("assembled %d bytes with sha256 %s, manifest says %d bytes %s", size, sum, a.m.Size, a.m.SHA256), Key: "artefact:" + a.id() + ":" + sum})
		os.RemoveAll(d)
		delete(s.arts, a.id())
		s.save()
		return
	}
	if err := os.Rename(filepath.Join(d, "data.part"), filepath.Join(d, "data")); err != nil {
		s.log.Error("firmware artefact", "artefact", a.id(), "err", err)
		return
	}
	syncDir(d)
	a.state = StateAvailable
	a.rejected = ""
	a.lastUsed = s.now().UTC()
	s.save()
	s.refreshGauges()
	s.log.Info("firmware artefact available", "artefact", a.id(), "size", a.m.Size, "sha256", a.m.SHA256)
	s.notifyAnnouncer()
}

func hashReader(r io.Reader) (string, int64, error) {
	h := newSHA()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), n, nil
}

func (s *Store) notifyAnnouncer() {
	s.notifySubs()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Store) refreshGauges() {
	counts := map[string]float64{StateDownloading: 0, StateAvailable: 0, StateEvicted: 0, StateRevoked: 0}
	for _, a := range s.arts {
		counts[a.state]++
	}
	for st, n := range counts {
		s.m.artefacts.WithLabelValues(st).Set(n)
	}
	s.m.used.Set(float64(s.usedBytes()))
}

// ArtefactStatus is one artefact in the status.
type ArtefactStatus struct {
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	State         string            `json:"state"`
	Size          int64             `json:"size"`
	SHA256        string            `json:"sha256"`
	ChunksPresent int               `json:"chunks_present"`
	ChunksTotal   int               `json:"chunks_total"`
	FirstMissing  int               `json:"first_missing"`
	Selector      firmware.Selector `json:"selector"`
	Expires       time.Time         `json:"expires"`
	LastUsed      time.Time         `json:"last_used"`
	Reason        string            `json:"reason,omitempty"`
}

// Status is the store's state for GET /v1/status/firmware and `katka firmware status`.
type Status struct {
	Dir         string           `json:"dir"`
	QuotaBytes  int64            `json:"quota_bytes"`
	UsedBytes   int64            `json:"used_bytes"`
	RootVersion int              `json:"root_version"`
	Artefacts   []ArtefactStatus `json:"artefacts"`
	Rejected    []Rejection      `json:"rejected"`
}

// Status returns the store's current state.
func (s *Store) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Dir: s.dir, QuotaBytes: int64(s.o.Config.Quota), UsedBytes: s.usedBytes(), RootVersion: s.trust.Root().Version,
		Artefacts: []ArtefactStatus{}, Rejected: append([]Rejection{}, s.rejected...)}
	for _, a := range s.arts {
		st.Artefacts = append(st.Artefacts, a.status())
	}
	sort.Slice(st.Artefacts, func(i, j int) bool {
		x, y := st.Artefacts[i], st.Artefacts[j]
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return firmware.CompareVersions(x.Version, y.Version) < 0
	})
	return st
}

func (a *artefact) status() ArtefactStatus {
	return ArtefactStatus{Name: a.m.Name, Version: a.m.Version, State: a.state, Size: a.m.Size, SHA256: a.m.SHA256,
		ChunksPresent: a.nhave, ChunksTotal: len(a.m.Chunks), FirstMissing: a.firstMissing(), Selector: a.m.Selector,
		Expires: a.m.Expires, LastUsed: a.lastUsed, Reason: a.rejected}
}
