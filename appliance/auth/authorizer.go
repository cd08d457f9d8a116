package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

// ACLFile is the name of the ACL store in the data directory.
const ACLFile = "acls.json"

// DefaultMaxACLs bounds the ACLs the store holds: CreateAcls past it fails.
const DefaultMaxACLs = 10000

// AuthorizerConfig configures an Authorizer.
type AuthorizerConfig struct {
	// Enabled turns enforcement on (auth.authorization). Off, every request is
	// allowed, as before authorization existed; the ACLs are still stored and
	// managed, so they can be prepared before enforcement is switched on.
	Enabled bool
	// SuperUsers are principals ("User:admin") allowed everything whatever the
	// ACLs say (auth.super_users). Internal is always one.
	SuperUsers []string
	// Path is the ACL store file; empty keeps ACLs in memory only (tests).
	Path string
	// MaxACLs bounds the stored ACLs; 0 means DefaultMaxACLs.
	MaxACLs int
	// Logger receives denials (debug) and store errors; nil: slog.Default().
	Logger *slog.Logger
}

// Authorizer decides whether a principal may do an operation on a resource,
// with Kafka's rules: a matching DENY wins over any ALLOW, no matching ALLOW
// means denied, super users and Internal are allowed everything. It owns the
// ACL store. A nil *Authorizer allows everything.
type Authorizer struct {
	cfg   AuthorizerConfig
	super map[string]bool
	log   *slog.Logger

	mu      sync.RWMutex
	acls    []ACL
	version int64 // changes stored so far (aclFileFormat.Version)
}

// aclFileFormat is the store's on-disk form: the whole ACL set, rewritten
// atomically on every change. Version counts changes, so a replicated copy
// (the cell's controller, later) can tell which set is newer.
type aclFileFormat struct {
	Format  int   `json:"format"`
	Version int64 `json:"version"`
	ACLs    []ACL `json:"acls"`
}

// NewAuthorizer loads the ACL store at cfg.Path (a missing file is an empty
// set) and returns the authorizer over it.
func NewAuthorizer(cfg AuthorizerConfig) (*Authorizer, error) {
	if cfg.MaxACLs <= 0 {
		cfg.MaxACLs = DefaultMaxACLs
	}
	a := &Authorizer{cfg: cfg, super: map[string]bool{Internal.String(): true}, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "authorizer")
	for _, s := range cfg.SuperUsers {
		p, err := ParsePrincipal(s)
		if err != nil {
			return nil, fmt.Errorf("super user: %w", err)
		}
		a.super[p.String()] = true
	}
	if cfg.Path != "" {
		b, err := os.ReadFile(cfg.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("acl store: %w", err)
		default:
			var f aclFileFormat
			if err := json.Unmarshal(b, &f); err != nil {
				return nil, fmt.Errorf("acl store %s: %w", cfg.Path, err)
			}
			for _, acl := range f.ACLs {
				if err := acl.Validate(); err != nil {
					return nil, fmt.Errorf("acl store %s: %w", cfg.Path, err)
				}
			}
			a.acls = f.ACLs
			a.version = f.Version
		}
	}
	return a, nil
}

// Enabled reports whether requests are checked at all.
func (a *Authorizer) Enabled() bool { return a != nil && a.cfg.Enabled }

// IsSuperUser reports whether p is allowed everything.
func (a *Authorizer) IsSuperUser(p Principal) bool { return a != nil && a.super[p.String()] }

// Authorized reports whether p, connected from host (an IP; "" for a
// principal that has no network address), may do op on the resource t/name.
// Always true when authorization is off.
func (a *Authorizer) Authorized(p Principal, host string, t ResourceType, name string, op Operation) bool {
	if !a.Enabled() || a.super[p.String()] {
		return true
	}
	ps := p.String()
	a.mu.RLock()
	defer a.mu.RUnlock()
	allowed := false
	for i := range a.acls {
		acl := &a.acls[i]
		if !acl.matchesResource(t, name) || !acl.matchesPrincipal(ps) || !acl.matchesHost(host) || !acl.matchesOp(op) {
			continue
		}
		if acl.Permission == PermissionDeny {
			a.log.Debug("denied", "principal", ps, "host", host, "operation", op, "resource", t, "name", name, "by", acl.String())
			return false
		}
		allowed = true
	}
	if !allowed {
		a.log.Debug("denied: no acl allows it", "principal", ps, "host", host, "operation", op, "resource", t, "name", name)
	}
	return allowed
}

// AuthorizedAny reports whether p may do op on at least one resource of type
// t: an ALLOW for it exists that is not a literal name some DENY blocks.
// Kafka asks this where no single resource is named (an idempotent producer's
// InitProducerId needs WRITE on some topic).
func (a *Authorizer) AuthorizedAny(p Principal, host string, t ResourceType, op Operation) bool {
	if !a.Enabled() || a.super[p.String()] {
		return true
	}
	ps := p.String()
	a.mu.RLock()
	var candidates []ACL
	for i := range a.acls {
		acl := &a.acls[i]
		if acl.ResourceType == t && acl.Permission == PermissionAllow && acl.matchesPrincipal(ps) && acl.matchesHost(host) && acl.matchesOp(op) {
			candidates = append(candidates, *acl)
		}
	}
	a.mu.RUnlock()
	for _, c := range candidates {
		if a.Authorized(p, host, t, c.Name, op) {
			return true
		}
	}
	return false
}

// Add stores acls (duplicates of stored ones are skipped) durably before it
// returns; it fails, storing none, if one is invalid or the store would
// exceed its limit.
func (a *Authorizer) Add(acls ...ACL) error {
	for _, acl := range acls {
		if err := acl.Validate(); err != nil {
			return err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	next := slices.Clone(a.acls)
	for _, acl := range acls {
		if !slices.Contains(next, acl) {
			next = append(next, acl)
		}
	}
	if len(next) == len(a.acls) {
		return nil
	}
	if len(next) > a.cfg.MaxACLs {
		return fmt.Errorf("%w: %d ACLs stored, %d more would pass the limit of %d", ErrTooManyACLs, len(a.acls), len(next)-len(a.acls), a.cfg.MaxACLs)
	}
	if err := a.store(next); err != nil {
		return err
	}
	a.acls = next
	for _, acl := range acls {
		a.log.Info("acl added", "acl", acl.String())
	}
	return nil
}

// ErrTooManyACLs is returned by Add past AuthorizerConfig.MaxACLs.
var ErrTooManyACLs = errors.New("too many ACLs")

// List returns the stored ACLs f matches, sorted.
func (a *Authorizer) List(f Filter) []ACL {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	var out []ACL
	for _, acl := range a.acls {
		if f.Matches(acl) {
			out = append(out, acl)
		}
	}
	a.mu.RUnlock()
	sortACLs(out)
	return out
}

// Remove deletes the ACLs each filter matches, durably before it returns;
// out[i] is what filters[i] matched (an ACL two filters match is reported
// under the first).
func (a *Authorizer) Remove(filters ...Filter) ([][]ACL, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]ACL, len(filters))
	var kept []ACL
	for _, acl := range a.acls {
		hit := false
		for i, f := range filters {
			if f.Matches(acl) {
				out[i] = append(out[i], acl)
				hit = true
				break
			}
		}
		if !hit {
			kept = append(kept, acl)
		}
	}
	if len(kept) == len(a.acls) {
		return out, nil
	}
	if err := a.store(kept); err != nil {
		return nil, err
	}
	a.acls = kept
	for _, del := range out {
		for _, acl := range del {
			a.log.Info("acl removed", "acl", acl.String())
		}
	}
	return out, nil
}

// store writes acls to the store file atomically: a temporary file, fsync,
// rename over the old one, fsync of the directory. The caller holds a.mu.
func (a *Authorizer) store(acls []ACL) error {
	if a.cfg.Path == "" {
		return nil
	}
	b, err := json.MarshalIndent(aclFileFormat{Format: 1, Version: a.version + 1, ACLs: acls}, "", "  ")
	if err != nil {
		return fmt.Errorf("acl store: %w", err)
	}
	tmp := a.cfg.Path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("acl store: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.cfg.Path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(a.cfg.Path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("acl store %s: %w", a.cfg.Path, err)
	}
	a.version++
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sortACLs orders ACLs by resource, then principal, host, operation,
// permission, so listings are stable.
func sortACLs(acls []ACL) {
	sort.Slice(acls, func(i, j int) bool {
		x, y := acls[i], acls[j]
		if x.ResourceType != y.ResourceType {
			return x.ResourceType < y.ResourceType
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		if x.Pattern != y.Pattern {
			return x.Pattern < y.Pattern
		}
		if x.Principal != y.Principal {
			return x.Principal < y.Principal
		}
		if x.Host != y.Host {
			return x.Host < y.Host
		}
		if x.Operation != y.Operation {
			return x.Operation < y.Operation
		}
		return x.Permission < y.Permission
	})
}

func sortedStrings(s []string) []string { sort.Strings(s); return s }
