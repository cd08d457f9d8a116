package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func testManifest(t *testing.T, data []byte, version string, expires time.Time) Manifest {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := BuildManifest(p, BuildOptions{Name: "plc-fw", Version: version, ChunkSize: 1000, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestManifestSignVerifyAndReasons(t *testing.T) {
	rootPub, rootPriv := mustKey(t)
	tPub, tPriv := mustKey(t)
	_, otherPriv := mustKey(t)
	now := time.Now()
	rootEnv, err := Sign(NewRoot(1, now.Add(time.Hour), []ed25519.PublicKey{rootPub}, []ed25519.PublicKey{tPub}), rootPriv)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrust(rootEnv)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2500)
	for i := range data {
		data[i] = byte(i)
	}
	m := testManifest(t, data, "1.2.0", now.Add(time.Hour))
	if len(m.Chunks) != 3 || m.Size != 2500 || m.ChunkLen(2) != 500 || m.Chunks[0] != HashHex(data[:1000]) || m.SHA256 != HashHex(data) {
		t.Fatalf("manifest %+v", m)
	}
	env, _ := Sign(m, tPriv)
	// Through JSON, as it travels.
	raw, _ := json.Marshal(env)
	env2, err := ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tr.VerifyManifest(env2, now)
	if err != nil || got.SHA256 != m.SHA256 {
		t.Fatalf("verify: %v", err)
	}
	cases := map[Reason]Envelope{}
	cases[ReasonUnknownKey], _ = Sign(m, otherPriv)
	cases[ReasonBadSignature] = Envelope{Signed: append(json.RawMessage(nil), env.Signed...), Signatures: env.Signatures}
	idx := bytes.Index(env.Signed, []byte(m.Chunks[1]))
	if cases[ReasonBadSignature].Signed[idx] == 'a' {
		cases[ReasonBadSignature].Signed[idx] = 'b'
	} else {
		cases[ReasonBadSignature].Signed[idx] = 'a'
	}
	cases[ReasonExpired], _ = Sign(testManifest(t, data, "1.2.0", now.Add(-time.Minute)), tPriv)
	cases[ReasonMalformed], _ = Sign(Manifest{Type: TypeManifest, Name: "../x", Version: "1", ChunkSize: 10, Expires: now.Add(time.Hour)}, tPriv)
	for want, e := range cases {
		if _, err := tr.VerifyManifest(e, now); ReasonOf(err) != want {
			t.Errorf("%s: got %v", want, err)
		}
	}
	// A root key cannot sign manifests.
	if e, _ := Sign(m, rootPriv); ReasonOf(func() error { _, err := tr.VerifyManifest(e, now); return err }()) != ReasonUnknownKey {
		t.Error("root key accepted for a manifest")
	}
}

func TestRootRotation(t *testing.T) {
	r1Pub, r1Priv := mustKey(t)
	r2Pub, r2Priv := mustKey(t)
	t1Pub, t1Priv := mustKey(t)
	t2Pub, t2Priv := mustKey(t)
	exp := time.Now().Add(time.Hour)
	env1, _ := Sign(NewRoot(1, exp, []ed25519.PublicKey{r1Pub}, []ed25519.PublicKey{t1Pub}), r1Priv)
	tr, err := NewTrust(env1)
	if err != nil {
		t.Fatal(err)
	}
	v2 := NewRoot(2, exp, []ed25519.PublicKey{r2Pub}, []ed25519.PublicKey{t2Pub})
	// Signed only by the new root key: the old root never agreed.
	bad, _ := Sign(v2, r2Priv)
	if _, err := tr.Update(bad); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("v2 without old root signature: %v", err)
	}
	// Signed only by the old: the new keys never proved possession.
	bad, _ = Sign(v2, r1Priv)
	if _, err := tr.Update(bad); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("v2 without its own signature: %v", err)
	}
	skip, _ := Sign(NewRoot(3, exp, []ed25519.PublicKey{r2Pub}, []ed25519.PublicKey{t2Pub}), r1Priv, r2Priv)
	if _, err := tr.Update(skip); ReasonOf(err) != ReasonRootVersion {
		t.Fatalf("v3 after v1: %v", err)
	}
	good, _ := Sign(v2, r1Priv, r2Priv)
	if ok, err := tr.Update(good); !ok || err != nil {
		t.Fatalf("v2: %v %v", ok, err)
	}
	if ok, err := tr.Update(env1); ok || err != nil {
		t.Fatalf("old root again: %v %v", ok, err)
	}
	m := Manifest{Type: TypeManifest, Name: "a", Version: "1", ChunkSize: 10, Size: 0, SHA256: HashHex(nil), Chunks: []string{HashHex(nil)}, Expires: exp}
	old, _ := Sign(m, t1Priv)
	if _, err := tr.VerifyManifest(old, time.Now()); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("rotated-out targets key: %v", err)
	}
	cur, _ := Sign(m, t2Priv)
	if _, err := tr.VerifyManifest(cur, time.Now()); err != nil {
		t.Fatalf("new targets key: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.10.0", "1.9.2", 1}, {"v2", "2", 0}, {"1.0", "1.0.1", -1}, {"2.0.0-rc1", "2.0.0-rc2", -1}, {"3", "3", 0}} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("%s vs %s: %d want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	_, priv := mustKey(t)
	p := filepath.Join(t.TempDir(), "targets.key")
	pubPath, err := WriteKeyPair(p, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteKeyPair(p, priv); err == nil {
		t.Fatal("overwrote a private key")
	}
	got, err := ReadPrivateKey(p)
	if err != nil || !got.Equal(priv) {
		t.Fatalf("read private: %v", err)
	}
	pub, err := ReadPublicKey(pubPath)
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("read public: %v", err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode())
	}
}

// TestThreshold: a role with threshold 2 needs two distinct valid signatures.
func TestThreshold(t *testing.T) {
	rPub, rPriv := mustKey(t)
	aPub, aPriv := mustKey(t)
	bPub, bPriv := mustKey(t)
	root := NewRoot(1, time.Now().Add(time.Hour), []ed25519.PublicKey{rPub}, []ed25519.PublicKey{aPub, bPub})
	ro := root.Roles[RoleTargets]
	ro.Threshold = 2
	root.Roles[RoleTargets] = ro
	env, _ := Sign(root, rPriv)
	tr, err := NewTrust(env)
	if err != nil {
		t.Fatal(err)
	}
	m := Manifest{Type: TypeManifest, Name: "a", Version: "1", ChunkSize: 10, SHA256: HashHex(nil), Chunks: []string{HashHex(nil)}, Expires: time.Now().Add(time.Hour)}
	one, _ := Sign(m, aPriv)
	if _, err := tr.VerifyManifest(one, time.Now()); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("one of two: %v", err)
	}
	twice, _ := Sign(m, aPriv, aPriv)
	if _, err := tr.VerifyManifest(twice, time.Now()); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("the same key twice: %v", err)
	}
	both, _ := Sign(m, aPriv, bPriv)
	if _, err := tr.VerifyManifest(both, time.Now()); err != nil {
		t.Fatalf("two of two: %v", err)
	}
}

// TestWaves: a 10% wave, then labels, then everyone, an hour apart.
func TestWaves(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := Manifest{Name: "fw", Created: created, Waves: []Wave{{Percent: 10}, {Labels: map[string]string{"line": "3"}, After: "1h"}, {Percent: 100, After: "1h"}}}
	if got := m.OpenWaves(created); got != 1 {
		t.Fatalf("open at creation: %d", got)
	}
	if got := m.OpenWaves(created.Add(90 * time.Minute)); got != 2 {
		t.Fatalf("open after 90m: %d", got)
	}
	in10 := 0
	for i := range 1000 {
		d := fmt.Sprintf("dev-%d", i)
		w, open := m.WaveFor(d, nil, created)
		if w == 0 {
			in10++
			if !open {
				t.Fatal("wave 0 closed at creation")
			}
		} else if w != 2 || open {
			t.Fatalf("%s: wave %d open %v at creation", d, w, open)
		}
		if w2, _ := m.WaveFor(d, nil, created); w2 != w {
			t.Fatal("bucket not stable")
		}
	}
	if in10 < 60 || in10 > 140 {
		t.Fatalf("%d of 1000 devices in the 10%% wave", in10)
	}
	// A line-3 device outside the first 10% is in wave 1, open after an hour.
	for i := range 1000 {
		d := fmt.Sprintf("dev-%d", i)
		if Bucket("fw", d) < 10 {
			continue
		}
		if w, open := m.WaveFor(d, map[string]string{"line": "3"}, created.Add(61*time.Minute)); w != 1 || !open {
			t.Fatalf("line-3 device: wave %d open %v", w, open)
		}
		break
	}
	bad := m
	bad.Waves = []Wave{{After: "1h"}}
	bad.Type, bad.Version, bad.ChunkSize, bad.SHA256, bad.Chunks = TypeManifest, "1", 10, HashHex(nil), []string{HashHex(nil)}
	if ReasonOf(bad.Check()) != ReasonMalformed {
		t.Fatal("a wave without devices accepted")
	}
}
