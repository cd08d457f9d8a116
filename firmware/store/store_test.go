package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/firmware"
)

type fixture struct {
	t    *testing.T
	b    *broker.Broker
	s    *Store
	key  ed25519.PrivateKey
	cfg  config.Firmware
	srv  *httptest.Server
	stop func()
	// skew is added to the store's clock.
	skew atomic.Int64
	// modify, when set, changes a manifest put builds before it is signed.
	modify func(*firmware.Manifest)
}

// resign signs the held manifest of name/version again, created a second
// later, after mod, and writes it to the manifest topic.
func (f *fixture) resign(name, version string, mod func(*firmware.Manifest)) {
	f.t.Helper()
	var m firmware.Manifest
	var env firmware.Envelope
	raw, err := os.ReadFile(filepath.Join(f.s.dir, name, version, "manifest.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	json.Unmarshal(raw, &env)
	json.Unmarshal(env.Signed, &m)
	m.Created = m.Created.Add(time.Second)
	mod(&m)
	env, _ = firmware.Sign(m, f.key)
	val, _ := json.Marshal(env)
	if _, err := f.b.Produce(context.Background(), f.cfg.ManifestTopic, 0, []broker.Record{{Key: []byte(name), Value: val}}, broker.AcksAll); err != nil {
		f.t.Fatal(err)
	}
}

func newFixture(t *testing.T, quota config.ByteSize) *fixture {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Open(broker.Options{DataDir: filepath.Join(dir, "data"), Logger: quiet, SegmentBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	rootPub, rootPriv, _ := firmware.GenerateKey()
	tPub, tPriv, _ := firmware.GenerateKey()
	env, _ := firmware.Sign(firmware.NewRoot(1, time.Now().Add(48*time.Hour), []ed25519.PublicKey{rootPub}, []ed25519.PublicKey{tPub}), rootPriv)
	rootFile := filepath.Join(dir, "root.json")
	data, _ := json.Marshal(env)
	os.WriteFile(rootFile, data, 0o644)
	cfg := config.Default().Firmware
	cfg.Enabled, cfg.RootFile, cfg.Quota = true, rootFile, quota
	f := &fixture{t: t, b: b, key: tPriv, cfg: cfg}
	f.start(quiet)
	return f
}

func (f *fixture) start(log *slog.Logger) {
	now := func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }
	s, err := New(Options{Broker: f.b, Config: f.cfg, DataDir: filepath.Dir(f.cfg.RootFile), Log: log, Now: now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	mux := http.NewServeMux()
	s.Routes(mux)
	f.srv = httptest.NewServer(mux)
	f.stop = func() { cancel(); <-done; f.srv.Close() }
	f.t.Cleanup(func() { f.stop() })
}

// put writes an artefact's manifest and chunks into the local topics;
// chunksFirst writes the chunks before the manifest.
func (f *fixture) put(name, version string, size int, chunksFirst bool, waves ...firmware.Wave) []byte {
	f.t.Helper()
	data := bytes.Repeat([]byte(name+version), size/len(name+version)+1)[:size]
	p := filepath.Join(f.t.TempDir(), "a.bin")
	os.WriteFile(p, data, 0o644)
	m, err := firmware.BuildManifest(p, firmware.BuildOptions{Name: name, Version: version, ChunkSize: 64 << 10, Expires: time.Now().Add(time.Hour), Waves: waves})
	if err != nil {
		f.t.Fatal(err)
	}
	if f.modify != nil {
		f.modify(&m)
	}
	env, _ := firmware.Sign(m, f.key)
	val, _ := json.Marshal(env)
	var chunks []broker.Record
	for i := range m.Chunks {
		chunks = append(chunks, broker.Record{Key: []byte(firmware.ChunkKey(name, version, i)), Value: data[i*m.ChunkSize : i*m.ChunkSize+m.ChunkLen(i)]})
	}
	writeManifest := func() {
		if _, err := f.b.Produce(context.Background(), f.cfg.ManifestTopic, 0, []broker.Record{{Key: []byte(name), Value: val}}, broker.AcksAll); err != nil {
			f.t.Fatal(err)
		}
	}
	if !chunksFirst {
		writeManifest()
	}
	if _, err := f.b.Produce(context.Background(), f.cfg.ChunkTopic, 0, chunks, broker.AcksAll); err != nil {
		f.t.Fatal(err)
	}
	if chunksFirst {
		writeManifest()
	}
	return data
}

func (f *fixture) waitFor(what string, cond func(Status) bool) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(f.s.Status()) {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s: %+v", what, f.s.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func state(st Status, name, version string) string {
	for _, a := range st.Artefacts {
		if a.Name == name && a.Version == version {
			return a.State
		}
	}
	return ""
}

func rejectedFor(st Status, name, reason string) bool {
	for _, r := range st.Rejected {
		if r.Name == name && r.Reason == reason {
			return true
		}
	}
	return false
}

// TestQuotaEvictsOldestUnused fills a 1 MiB store with three 300 KB
// artefacts, uses the oldest, and adds a fourth: the least recently used one
// goes; an artefact bigger than the quota is rejected over_quota.
func TestQuotaEvictsOldestUnused(t *testing.T) {
	f := newFixture(t, 1*config.MiB)
	a := f.put("a", "1", 300_000, false)
	f.waitFor("a available", func(st Status) bool { return state(st, "a", "1") == StateAvailable })
	f.put("b", "1", 300_000, false)
	f.waitFor("b available", func(st Status) bool { return state(st, "b", "1") == StateAvailable })
	f.put("c", "1", 300_000, false)
	f.waitFor("c available", func(st Status) bool { return state(st, "c", "1") == StateAvailable })
	resp, err := http.Get(f.srv.URL + "/v1/firmware/a/1") // a is now the most recently used
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, a) {
		t.Fatal("a served wrong bytes")
	}
	f.put("d", "1", 300_000, false)
	f.waitFor("d available", func(st Status) bool { return state(st, "d", "1") == StateAvailable })
	st := f.s.Status()
	if state(st, "b", "1") != StateEvicted || state(st, "a", "1") != StateAvailable || state(st, "c", "1") != StateAvailable {
		t.Fatalf("after d: %+v", st.Artefacts)
	}
	if st.UsedBytes > int64(f.cfg.Quota) {
		t.Fatalf("used %d over quota %d", st.UsedBytes, f.cfg.Quota)
	}
	if _, err := os.Stat(filepath.Join(f.s.dir, "b", "1")); !os.IsNotExist(err) {
		t.Fatalf("evicted b still on disk: %v", err)
	}
	if resp, _ := http.Get(f.srv.URL + "/v1/firmware/b/1"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("evicted b: %d", resp.StatusCode)
	}
	f.put("huge", "1", 2<<20, false)
	f.waitFor("huge rejected", func(st Status) bool { return rejectedFor(st, "huge", "over_quota") })
}

// TestChunksBeforeManifest: the downlink may write chunks before their
// manifest; they are read again once the manifest is accepted.
func TestChunksBeforeManifest(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	data := f.put("early", "2", 500_000, true)
	f.waitFor("early available", func(st Status) bool { return state(st, "early", "2") == StateAvailable })
	resp, err := http.Get(f.srv.URL + "/v1/firmware/early/2")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) || resp.Header.Get("ETag") != `"`+firmware.HashHex(data)+`"` {
		t.Fatalf("served %d bytes, etag %s", len(got), resp.Header.Get("ETag"))
	}
}

// TestResumeRehashesPartialFile stops the store mid-download, damages one
// chunk in the partial file, and starts it again: the damaged chunk counts as
// missing, the others as present, and the download completes.
func TestResumeRehashesPartialFile(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	data := f.put("r", "1", 400_000, false)
	f.waitFor("r available", func(st Status) bool { return state(st, "r", "1") == StateAvailable })
	f.stop()
	// Make it a partial download again: state downloading, file data.part with chunk 1 damaged.
	d := filepath.Join(f.s.dir, "r", "1")
	os.Rename(filepath.Join(d, "data"), filepath.Join(d, "data.part"))
	fh, _ := os.OpenFile(filepath.Join(d, "data.part"), os.O_RDWR, 0)
	fh.WriteAt([]byte("XXXX"), 70_000)
	fh.Close()
	raw, _ := os.ReadFile(f.s.statePath())
	os.WriteFile(f.s.statePath(), bytes.Replace(raw, []byte(`"state": "available"`), []byte(`"state": "downloading"`), 1), 0o644)
	var logs bytes.Buffer
	f.start(slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "firmware download resumes") || !strings.Contains(logs.String(), "first_missing=1") {
		t.Fatalf("no resume at chunk 1 logged:\n%s", logs.String())
	}
	f.waitFor("r available again", func(st Status) bool { return state(st, "r", "1") == StateAvailable })
	got, _ := os.ReadFile(filepath.Join(d, "data"))
	if !bytes.Equal(got, data) {
		t.Fatal("resumed file differs")
	}
}

// TestFeedbackLimits: a feedback body over MaxFeedbackBytes is refused with
// 413, a bad state with 400, a good one lands in the status topic.
func TestFeedbackLimits(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	post := func(body string) int {
		resp, err := http.Post(f.srv.URL+"/v1/firmware/feedback", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	big := fmt.Sprintf(`{"device":"d1","name":"a","version":"1","state":"installed","detail":%q}`, strings.Repeat("x", MaxFeedbackBytes))
	if c := post(big); c != http.StatusRequestEntityTooLarge {
		t.Errorf("big feedback: %d", c)
	}
	if c := post(`{"device":"d1","name":"a","version":"1","state":"exploded"}`); c != http.StatusBadRequest {
		t.Errorf("bad state: %d", c)
	}
	if c := post(`{"device":"d1","name":"a","version":"1","state":"installed"}`); c != http.StatusAccepted {
		t.Errorf("good feedback: %d", c)
	}
	res, err := f.b.Fetch(context.Background(), f.cfg.StatusTopic, 0, 0, 1<<20, time.Second)
	if err != nil || len(res.Records) != 1 || string(res.Records[0].Key) != "d1" {
		t.Fatalf("status topic: %v %+v", err, res.Records)
	}
}

// TestWavesGateDevices: wave 0 is line=3, wave 1 everyone an hour later: a
// line-3 device lists and downloads it, another device gets neither (403
// naming the wave and when it opens); without ?device= it is listed.
func TestWavesGateDevices(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	f.put("w", "1", 100_000, false, firmware.Wave{Labels: map[string]string{"line": "3"}}, firmware.Wave{Percent: 100, After: "1h"})
	f.waitFor("w available", func(st Status) bool { return state(st, "w", "1") == StateAvailable })
	get := func(path string) (int, string) {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if _, body := get("/v1/firmware?device=plc-1&label=line=3"); !strings.Contains(body, `"wave":0`) {
		t.Fatalf("line-3 device list: %s", body)
	}
	if code, _ := get("/v1/firmware/w/1?device=plc-1&label=line=3"); code != http.StatusOK {
		t.Fatalf("line-3 device download: %d", code)
	}
	if _, body := get("/v1/firmware?device=plc-2&label=line=4"); body != "[]\n" {
		t.Fatalf("line-4 device list: %q", body)
	}
	if code, body := get("/v1/firmware/w/1?device=plc-2&label=line=4"); code != http.StatusForbidden || !strings.Contains(body, "wave 1") || !strings.Contains(body, "opens at") {
		t.Fatalf("line-4 device download: %d %s", code, body)
	}
	if _, body := get("/v1/firmware"); !strings.Contains(body, `"name":"w"`) {
		t.Fatalf("list without device: %s", body)
	}
}

// TestExpiredAfterAcceptance: an artefact whose manifest expires after it
// became available is no longer listed, served (410) or announced.
func TestExpiredAfterAcceptance(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	f.put("e", "1", 10_000, false)
	f.waitFor("e available", func(st Status) bool { return state(st, "e", "1") == StateAvailable })
	f.skew.Store(int64(2 * time.Hour)) // put signs with a one-hour expiry
	resp, err := http.Get(f.srv.URL + "/v1/firmware/e/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("expired download: %d", resp.StatusCode)
	}
	if got := f.s.available(); len(got) != 0 {
		t.Fatalf("expired artefact listed: %+v", got)
	}
	// The same artefact signed again later, with a later expiry, is adopted.
	var m firmware.Manifest
	var env firmware.Envelope
	raw, _ := os.ReadFile(filepath.Join(f.s.dir, "e", "1", "manifest.json"))
	json.Unmarshal(raw, &env)
	json.Unmarshal(env.Signed, &m)
	m.Created, m.Expires = m.Created.Add(time.Hour), m.Expires.Add(24*time.Hour)
	env, _ = firmware.Sign(m, f.key)
	val, _ := json.Marshal(env)
	if _, err := f.b.Produce(context.Background(), f.cfg.ManifestTopic, 0, []broker.Record{{Key: []byte("e"), Value: val}}, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	f.waitFor("re-signed manifest adopted", func(Status) bool { return len(f.s.available()) == 1 })
}

// TestPauseAbortRevoke: a newer version revokes an older one (deleted, never
// served, a later manifest for it rejected "revoked"); a re-signed manifest
// pauses the rollout for devices, another aborts it.
func TestPauseAbortRevoke(t *testing.T) {
	f := newFixture(t, 16*config.MiB)
	code := func(path string) int {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	f.put("p", "1", 50_000, false)
	f.waitFor("p 1 available", func(st Status) bool { return state(st, "p", "1") == StateAvailable })
	f.modify = func(m *firmware.Manifest) { m.Revokes = []string{"1"} }
	f.put("p", "2", 50_000, false)
	f.modify = nil
	f.waitFor("p 1 revoked, p 2 available", func(st Status) bool {
		return state(st, "p", "1") == StateRevoked && state(st, "p", "2") == StateAvailable
	})
	if c := code("/v1/firmware/p/1"); c != http.StatusNotFound {
		t.Fatalf("revoked download: %d", c)
	}
	if _, err := os.Stat(filepath.Join(f.s.dir, "p", "1")); !os.IsNotExist(err) {
		t.Fatalf("revoked artefact still on disk: %v", err)
	}
	f.modify = func(m *firmware.Manifest) { m.Downgrade = true } // even as an intended downgrade
	f.put("p", "1", 50_001, false)
	f.modify = nil
	f.waitFor("p 1 again rejected as revoked", func(st Status) bool { return rejectedFor(st, "p", "revoked") })

	f.resign("p", "2", func(m *firmware.Manifest) { m.Paused = true })
	f.waitFor("p 2 paused for devices", func(Status) bool { return code("/v1/firmware/p/2?device=d1") == http.StatusForbidden })
	if c := code("/v1/firmware/p/2"); c != http.StatusOK {
		t.Fatalf("paused artefact without device: %d", c)
	}
	f.resign("p", "2", func(m *firmware.Manifest) { m.Paused, m.Aborted = false, true })
	f.waitFor("p 2 aborted", func(st Status) bool { return state(st, "p", "2") == StateRevoked })
	if c := code("/v1/firmware/p/2"); c != http.StatusNotFound {
		t.Fatalf("aborted download: %d", c)
	}
}
