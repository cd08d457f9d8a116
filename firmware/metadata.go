package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Metadata types (the "_type" field of a signed body).
const (
	TypeRoot     = "katka-firmware-root"
	TypeManifest = "katka-firmware-manifest"
)

// Role names in a root.
const (
	RoleRoot    = "root"    // signs the next root
	RoleTargets = "targets" // signs manifests
)

// DefaultChunkSize is the chunk size publish uses unless told otherwise.
const DefaultChunkSize = 256 << 10

// MaxChunkSize bounds a manifest's chunk size (a chunk is one Kafka record).
const MaxChunkSize = 4 << 20

// MaxManifestBytes bounds an envelope's size: a 4 GiB artefact in 256 KiB
// chunks lists 16,384 hashes (~1.1 MB).
const MaxManifestBytes = 4 << 20

// Envelope is signed metadata as stored in a record value: the signed body and
// the signatures over its compact JSON bytes (encoding/json's Compact: only
// insignificant whitespace removed). Verifying the bytes as they travel rather
// than a re-encoding of decoded fields needs no canonical JSON.
type Envelope struct {
	// Signed is the root or manifest, as JSON bytes.
	Signed json.RawMessage `json:"signed"`
	// Signatures are ed25519 signatures over Signed.
	Signatures []Signature `json:"signatures"`
}

// Signature is one key's ed25519 signature over an envelope's Signed bytes.
type Signature struct {
	// KeyID is the signing key's KeyID.
	KeyID string `json:"keyid"`
	// Sig is the base64 (standard) signature.
	Sig string `json:"sig"`
}

// Role lists the keys trusted for a role and how many must sign.
type Role struct {
	// KeyIDs are the role's keys (each in Root.Keys).
	KeyIDs []string `json:"keyids"`
	// Threshold is how many distinct listed keys must sign.
	Threshold int `json:"threshold"`
}

// Root is the root of trust: which keys sign manifests (targets) and which
// sign the next root. Version N+1 is trusted only when signed by a threshold of
// version N's root keys and of its own (TUF's root rotation).
type Root struct {
	Type    string    `json:"_type"`
	Version int       `json:"version"`
	Expires time.Time `json:"expires"`
	// Keys maps KeyID to the base64 raw ed25519 public key.
	Keys  map[string]string `json:"keys"`
	Roles map[string]Role   `json:"roles"`
}

// Selector says which devices an artefact is for.
type Selector struct {
	// Hardware lists device classes (e.g. plc-s7-1500); empty is every class.
	Hardware []string `json:"hardware,omitempty"`
	// Labels must all match a device's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Wave is one stage of a rollout: a share of the matching devices, or the
// devices with some labels, after a minimum time since the previous wave.
type Wave struct {
	Percent int               `json:"percent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// After is the minimum time since the previous wave started (Go duration).
	After string `json:"after,omitempty"`
}

// Manifest describes one artefact version; it is what a targets key signs.
type Manifest struct {
	Type    string `json:"_type"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
	// SHA256 is the hex sha256 of the whole artefact (also its HTTP ETag).
	SHA256    string `json:"sha256"`
	ChunkSize int    `json:"chunk_size"`
	// Chunks are the hex sha256 of each chunk, in order.
	Chunks   []string  `json:"chunks"`
	Selector Selector  `json:"selector"`
	Waves    []Wave    `json:"waves,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	// Downgrade marks an intended downgrade: the anti-rollback check lets a
	// version below the highest seen pass only with it (and it is signed).
	Downgrade bool `json:"downgrade,omitempty"`
	// Paused holds the rollout: devices that identify themselves get no new
	// download of this version until a later signature without it.
	Paused bool `json:"paused,omitempty"`
	// Aborted withdraws this version: edges delete it and never serve it again.
	Aborted bool `json:"aborted,omitempty"`
	// Revokes lists other versions of the same name that edges must delete
	// and never serve again (e.g. a bad image this version replaces).
	Revokes []string `json:"revokes,omitempty"`
}

// Reason is why an artefact or metadata was rejected: the label of
// katka_firmware_rejected_total and the reason in `katka firmware status`.
type Reason string

// Rejection reasons.
const (
	ReasonMalformed    Reason = "malformed"     // not parseable, wrong type, inconsistent fields
	ReasonUnknownKey   Reason = "unknown_key"   // signed by no key the root trusts for the role
	ReasonBadSignature Reason = "bad_signature" // a trusted key's signature does not verify, or too few signed
	ReasonExpired      Reason = "expired"       // past its expiry (manifest or root)
	ReasonDowngrade    Reason = "downgrade"     // version below one already accepted, not marked as an intended downgrade
	ReasonRootVersion  Reason = "root_version"  // a root that is not the next version
	ReasonChunkHash    Reason = "chunk_hash"    // a chunk whose sha256 is not the manifest's
	ReasonArtefactHash Reason = "artefact_hash" // the assembled artefact's sha256 or size is not the manifest's
	ReasonOverQuota    Reason = "over_quota"    // larger than the firmware store's quota
	ReasonConflict     Reason = "conflict"      // same name and version as an accepted manifest, other content
	ReasonRevoked      Reason = "revoked"       // a version revoked or aborted by a signed manifest
)

// Reasons lists every reason (metrics are initialised with them).
var Reasons = []Reason{ReasonMalformed, ReasonUnknownKey, ReasonBadSignature, ReasonExpired, ReasonDowngrade,
	ReasonRootVersion, ReasonChunkHash, ReasonArtefactHash, ReasonOverQuota, ReasonConflict, ReasonRevoked}

// Rejection is an error with a Reason.
type Rejection struct {
	Reason Reason
	Detail string
}

func (r *Rejection) Error() string { return string(r.Reason) + ": " + r.Detail }

func reject(reason Reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns err's rejection reason, or "" if it is not a Rejection.
func ReasonOf(err error) Reason {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,100}$`)

// ValidName checks an artefact name or version: 1-100 of [a-zA-Z0-9._-], so it
// is safe as a path element, a record key part and an MQTT topic level.
func ValidName(s string) error {
	if !nameRE.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("%q is not allowed (1-100 of a-z A-Z 0-9 . _ -)", s)
	}
	return nil
}

// Sign signs body (a Root or Manifest) with keys into an envelope.
func Sign(body any, keys ...ed25519.PrivateKey) (Envelope, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode signed body: %w", err)
	}
	env := Envelope{Signed: raw}
	for _, k := range keys {
		env.Signatures = append(env.Signatures, Signature{
			KeyID: KeyID(k.Public().(ed25519.PublicKey)),
			Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(k, raw)),
		})
	}
	return env, nil
}

// ParseEnvelope decodes a record value into an envelope.
func ParseEnvelope(data []byte) (Envelope, error) {
	var env Envelope
	if len(data) > MaxManifestBytes {
		return env, reject(ReasonMalformed, "%d bytes (limit %d)", len(data), MaxManifestBytes)
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return env, reject(ReasonMalformed, "envelope: %v", err)
	}
	if len(env.Signed) == 0 {
		return env, reject(ReasonMalformed, "envelope without a signed body")
	}
	return env, nil
}

// NewRoot makes version 1 of a root trusting rootKeys for the root role and
// targetKeys for manifests, each with threshold 1.
func NewRoot(version int, expires time.Time, rootKeys, targetKeys []ed25519.PublicKey) Root {
	r := Root{Type: TypeRoot, Version: version, Expires: expires.UTC().Truncate(time.Second), Keys: map[string]string{}, Roles: map[string]Role{}}
	for role, keys := range map[string][]ed25519.PublicKey{RoleRoot: rootKeys, RoleTargets: targetKeys} {
		ro := Role{Threshold: 1}
		for _, k := range keys {
			id := KeyID(k)
			r.Keys[id] = base64.StdEncoding.EncodeToString(k)
			ro.KeyIDs = append(ro.KeyIDs, id)
		}
		r.Roles[role] = ro
	}
	return r
}

func (r Root) check() error {
	if r.Type != TypeRoot {
		return reject(ReasonMalformed, "_type %q, want %q", r.Type, TypeRoot)
	}
	if r.Version < 1 {
		return reject(ReasonMalformed, "root version %d", r.Version)
	}
	for _, name := range []string{RoleRoot, RoleTargets} {
		ro, ok := r.Roles[name]
		if !ok || ro.Threshold < 1 || ro.Threshold > len(ro.KeyIDs) {
			return reject(ReasonMalformed, "root role %s missing or threshold %d of %d keys", name, ro.Threshold, len(ro.KeyIDs))
		}
		for _, id := range ro.KeyIDs {
			if _, err := r.key(id); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r Root) key(id string) (ed25519.PublicKey, error) {
	s, ok := r.Keys[id]
	if !ok {
		return nil, reject(ReasonMalformed, "root lists key %s in a role but not in keys", id)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize || KeyID(b) != id {
		return nil, reject(ReasonMalformed, "root key %s is not a base64 ed25519 public key with that id", id)
	}
	return ed25519.PublicKey(b), nil
}

// verifyRole checks that env carries valid signatures of at least the role's
// threshold of distinct keys. No known key at all is ReasonUnknownKey; known
// keys with bad signatures, or too few, ReasonBadSignature.
func (r Root) verifyRole(env Envelope, role string) error {
	ro := r.Roles[role]
	allowed := map[string]bool{}
	for _, id := range ro.KeyIDs {
		allowed[id] = true
	}
	// Signatures cover the compact form, so re-indenting a file (root.json
	// written pretty) does not break them; any other change does.
	var signed bytes.Buffer
	if err := json.Compact(&signed, env.Signed); err != nil {
		return reject(ReasonMalformed, "signed body: %v", err)
	}
	valid := map[string]bool{}
	known := 0
	for _, s := range env.Signatures {
		if !allowed[s.KeyID] {
			continue
		}
		known++
		pub, err := r.key(s.KeyID)
		if err != nil {
			return err
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err == nil && ed25519.Verify(pub, signed.Bytes(), sig) {
			valid[s.KeyID] = true
		}
	}
	if known == 0 {
		ids := make([]string, 0, len(env.Signatures))
		for _, s := range env.Signatures {
			ids = append(ids, short(s.KeyID))
		}
		return reject(ReasonUnknownKey, "signed by [%s], none a %s key of root v%d", strings.Join(ids, " "), role, r.Version)
	}
	if len(valid) < ro.Threshold {
		return reject(ReasonBadSignature, "%d valid %s signatures of %d present, threshold %d (root v%d)", len(valid), role, known, ro.Threshold, r.Version)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Trust holds the current root of trust of one edge or publisher.
type Trust struct {
	root Root
	raw  []byte
}

// NewTrust pins env as the trust anchor (e.g. root.json shipped with the
// gateway). It must be self-signed by its own root role; its expiry is not
// checked here, only when manifests are verified.
func NewTrust(env Envelope) (*Trust, error) {
	var r Root
	if err := json.Unmarshal(env.Signed, &r); err != nil {
		return nil, reject(ReasonMalformed, "root: %v", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if err := r.verifyRole(env, RoleRoot); err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(env)
	return &Trust{root: r, raw: raw}, nil
}

// Root returns the current root.
func (t *Trust) Root() Root { return t.root }

// Envelope returns the current root's envelope as JSON (what root.json holds).
func (t *Trust) Envelope() []byte { return t.raw }

// Update moves to the next root: env must be version current+1, signed by a
// threshold of the current root keys and of its own. An older or equal version
// is ignored (nil error, false); a later one that skips a version is rejected.
func (t *Trust) Update(env Envelope) (bool, error) {
	var r Root
	if err := json.Unmarshal(env.Signed, &r); err != nil {
		return false, reject(ReasonMalformed, "root: %v", err)
	}
	if err := r.check(); err != nil {
		return false, err
	}
	if r.Version <= t.root.Version {
		return false, nil
	}
	if r.Version != t.root.Version+1 {
		return false, reject(ReasonRootVersion, "root v%d after v%d (need v%d first)", r.Version, t.root.Version, t.root.Version+1)
	}
	if err := t.root.verifyRole(env, RoleRoot); err != nil {
		return false, err
	}
	if err := r.verifyRole(env, RoleRoot); err != nil {
		return false, err
	}
	raw, _ := json.Marshal(env)
	t.root, t.raw = r, raw
	return true, nil
}

// VerifyManifest checks env's signatures against the current root's targets
// role, both expiries at now and the manifest's internal consistency.
// Anti-rollback is the caller's (it needs the versions already accepted: see
// CompareVersions).
func (t *Trust) VerifyManifest(env Envelope, now time.Time) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(env.Signed, &m); err != nil {
		return m, reject(ReasonMalformed, "manifest: %v", err)
	}
	if m.Type != TypeManifest {
		return m, reject(ReasonMalformed, "_type %q, want %q", m.Type, TypeManifest)
	}
	if err := t.root.verifyRole(env, RoleTargets); err != nil {
		return m, err
	}
	if now.After(t.root.Expires) {
		return m, reject(ReasonExpired, "root v%d expired %s", t.root.Version, t.root.Expires.Format(time.RFC3339))
	}
	if now.After(m.Expires) {
		return m, reject(ReasonExpired, "manifest %s %s expired %s", m.Name, m.Version, m.Expires.Format(time.RFC3339))
	}
	if err := m.Check(); err != nil {
		return m, err
	}
	return m, nil
}

// Check verifies the manifest's own consistency (names, sizes, chunk count).
func (m Manifest) Check() error {
	if err := ValidName(m.Name); err != nil {
		return reject(ReasonMalformed, "name %v", err)
	}
	if err := ValidName(m.Version); err != nil {
		return reject(ReasonMalformed, "version %v", err)
	}
	if m.ChunkSize < 1 || m.ChunkSize > MaxChunkSize {
		return reject(ReasonMalformed, "chunk_size %d (allowed 1..%d)", m.ChunkSize, MaxChunkSize)
	}
	if m.Size < 0 {
		return reject(ReasonMalformed, "size %d", m.Size)
	}
	if want := ChunkCount(m.Size, m.ChunkSize); len(m.Chunks) != want {
		return reject(ReasonMalformed, "%d chunk hashes for %d bytes in chunks of %d (want %d)", len(m.Chunks), m.Size, m.ChunkSize, want)
	}
	for _, v := range m.Revokes {
		if err := ValidName(v); err != nil {
			return reject(ReasonMalformed, "revokes: version %v", err)
		}
	}
	for i, w := range m.Waves {
		if w.Percent < 0 || w.Percent > 100 {
			return reject(ReasonMalformed, "wave %d: percent %d (allowed 0..100)", i, w.Percent)
		}
		if w.Percent == 0 && len(w.Labels) == 0 {
			return reject(ReasonMalformed, "wave %d selects no device (give percent or labels)", i)
		}
		if w.After != "" {
			if d, err := time.ParseDuration(w.After); err != nil || d < 0 {
				return reject(ReasonMalformed, "wave %d: after %q is not a duration >= 0", i, w.After)
			}
		}
	}
	for i, h := range append([]string{m.SHA256}, m.Chunks...) {
		if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			return reject(ReasonMalformed, "hash %d %q is not 64 lower-case hex digits", i, h)
		}
	}
	return nil
}

// ChunkCount is the number of chunks of size bytes (at least one, so an empty
// artefact still has a record to carry it).
func ChunkCount(size int64, chunk int) int {
	if size == 0 {
		return 1
	}
	return int((size + int64(chunk) - 1) / int64(chunk))
}

// ChunkLen is the length of chunk i.
func (m Manifest) ChunkLen(i int) int {
	return int(min(int64(m.ChunkSize), m.Size-int64(i)*int64(m.ChunkSize)))
}

// Matches reports whether a device of hardware class hw with labels fits the selector.
func (s Selector) Matches(hw string, labels map[string]string) bool {
	if len(s.Hardware) > 0 {
		ok := false
		for _, h := range s.Hardware {
			ok = ok || h == hw
		}
		if !ok {
			return false
		}
	}
	for k, v := range s.Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// CompareVersions orders two versions: dot- and dash-separated parts compared
// numerically when both are numbers, else as strings; a leading "v" is ignored
// ("1.10.0" > "1.9.2", "v2" = "2"). It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	split := func(s string) []string {
		s = strings.TrimPrefix(s, "v")
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '_' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < max(len(pa), len(pb)); i++ {
		if i >= len(pa) {
			return -1
		}
		if i >= len(pb) {
			return 1
		}
		na, ea := strconv.ParseUint(pa[i], 10, 64)
		nb, eb := strconv.ParseUint(pb[i], 10, 64)
		switch {
		case ea == nil && eb == nil:
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
		case pa[i] != pb[i]:
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
