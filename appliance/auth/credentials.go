package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
)

// UsersFile is the name of the SCRAM credential file in katka's data
// directory. It is a plain file rather than an internal topic: credentials are
// needed before any topic is open (the bootstrap admin), the file is tiny and
// rewritten whole, and `katka user` must work on a stopped gateway. A cell
// replicates users through its controller log (see Change), not as a topic.
const UsersFile = "users.json"

// SCRAM iteration bounds, Kafka's: AlterUserScramCredentials refuses counts
// outside them with UNACCEPTABLE_CREDENTIAL.
const (
	DefaultIterations = 4096
	MinIterations     = 4096
	MaxIterations     = 16384
)

// Credential is one user's SCRAM credential for one mechanism, salted and
// iterated as RFC 5802 stores it: the password itself is never kept.
type Credential struct {
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// Change is one credential upsert or deletion, the unit of change of the user
// store. It is what AlterUserScramCredentials and `katka user` produce and what
// a cell's controller will replicate; applying the same changes in the same
// order gives the same store everywhere.
type Change struct {
	User      string      `json:"user"`
	Mechanism Mechanism   `json:"mechanism"`
	Cred      *Credential `json:"credential,omitempty"` // nil deletes
}

// UserInfo summarises one user for listings: the mechanisms and iteration
// counts it has credentials for (never the credentials).
type UserInfo struct {
	Name       string
	Mechanisms []MechanismInfo
}

// MechanismInfo is one mechanism a user has a credential for.
type MechanismInfo struct {
	Mechanism  Mechanism
	Iterations int
}

// usersDoc is the file's JSON form.
type usersDoc struct {
	Version int                                  `json:"version"`
	Users   map[string]map[Mechanism]*Credential `json:"users"`
}

// Store holds the SCRAM credentials of katka's users in <data_dir>/users.json.
// Every change is read-modify-write under an exclusive flock and replaces the
// file atomically (temp file, fsync, rename, directory fsync), so `katka user`
// and a running server can both change it; a reader notices another process's
// change by the file's identity and reloads.
type Store struct {
	path string

	mu    sync.Mutex
	users map[string]map[Mechanism]*Credential
	seen  os.FileInfo // the file last loaded; nil when it did not exist
}

// OpenStore opens (without creating) the credential store of dataDir.
func OpenStore(dataDir string) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("user store: %w", err)
	}
	s := &Store{path: filepath.Join(dataDir, UsersFile)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the credential file's path.
func (s *Store) Path() string { return s.path }

// refreshLocked reloads the file when it changed since it was last read.
func (s *Store) refreshLocked() error {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		s.users, s.seen = map[string]map[Mechanism]*Credential{}, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	if s.seen != nil && os.SameFile(fi, s.seen) && fi.ModTime().Equal(s.seen.ModTime()) && fi.Size() == s.seen.Size() {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	var doc usersDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("user store %s: %w", s.path, err)
	}
	if doc.Users == nil {
		doc.Users = map[string]map[Mechanism]*Credential{}
	}
	for u, ms := range doc.Users {
		for m, c := range ms {
			if _, err := m.hash(); err != nil || c == nil || len(c.Salt) == 0 || len(c.StoredKey) == 0 || len(c.ServerKey) == 0 {
				return fmt.Errorf("user store %s: user %q: bad %s credential", s.path, u, m)
			}
		}
	}
	s.users, s.seen = doc.Users, fi
	return nil
}

// Lookup returns user's credential for mechanism m.
func (s *Store) Lookup(user string, m Mechanism) (Credential, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return Credential{}, false, err
	}
	c, ok := s.users[user][m]
	if !ok {
		return Credential{}, false, nil
	}
	return *c, true, nil
}

// Users lists every user with the mechanisms it has credentials for, sorted by
// name; names filters when not empty.
func (s *Store) Users(names ...string) ([]UserInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	var out []UserInfo
	for u, ms := range s.users {
		if len(names) > 0 && !slices.Contains(names, u) {
			continue
		}
		ui := UserInfo{Name: u}
		for m, c := range ms {
			ui.Mechanisms = append(ui.Mechanisms, MechanismInfo{Mechanism: m, Iterations: c.Iterations})
		}
		sort.Slice(ui.Mechanisms, func(i, j int) bool { return ui.Mechanisms[i].Mechanism < ui.Mechanisms[j].Mechanism })
		out = append(out, ui)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Apply applies changes in order and persists the result in one atomic
// rewrite. A deletion of a credential that does not exist is an error
// (ErrNoCredential) and nothing is applied.
func (s *Store) Apply(changes ...Change) error {
	for _, c := range changes {
		if c.User == "" {
			return errors.New("user store: empty user name")
		}
		if _, err := c.Mechanism.hash(); err != nil {
			return err
		}
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return err
	}
	next := make(map[string]map[Mechanism]*Credential, len(s.users))
	for u, ms := range s.users {
		next[u] = maps2(ms)
	}
	for _, c := range changes {
		if c.Cred == nil {
			if _, ok := next[c.User][c.Mechanism]; !ok {
				return fmt.Errorf("%w: user %q has no %s credential", ErrNoCredential, c.User, c.Mechanism)
			}
			delete(next[c.User], c.Mechanism)
			if len(next[c.User]) == 0 {
				delete(next, c.User)
			}
			continue
		}
		if next[c.User] == nil {
			next[c.User] = map[Mechanism]*Credential{}
		}
		cred := *c.Cred
		next[c.User][c.Mechanism] = &cred
	}
	b, err := json.MarshalIndent(usersDoc{Version: 1, Users: next}, "", "  ")
	if err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	if err := writeAtomic(s.path, append(b, '\n')); err != nil {
		return err
	}
	s.seen = nil // reload (and remember the new file's identity) on next use
	return s.refreshLocked()
}

// ErrNoCredential is returned when deleting a credential that does not exist.
var ErrNoCredential = errors.New("no such credential")

func maps2(m map[Mechanism]*Credential) map[Mechanism]*Credential {
	out := make(map[Mechanism]*Credential, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SetPassword stores credentials for user and password for each mechanism,
// with a fresh random salt each, iterations PBKDF2 rounds (0: default).
func (s *Store) SetPassword(user, password string, iterations int, mechs ...Mechanism) error {
	var changes []Change
	for _, m := range mechs {
		c, err := NewCredential(m, user, password, iterations)
		if err != nil {
			return err
		}
		changes = append(changes, Change{User: user, Mechanism: m, Cred: &c})
	}
	return s.Apply(changes...)
}

// DeleteUser removes every credential of user; it is an error when the user
// has none.
func (s *Store) DeleteUser(user string) error {
	infos, err := s.Users(user)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return fmt.Errorf("%w: user %q does not exist", ErrNoCredential, user)
	}
	var changes []Change
	for _, mi := range infos[0].Mechanisms {
		changes = append(changes, Change{User: user, Mechanism: mi.Mechanism})
	}
	return s.Apply(changes...)
}

// writeAtomic replaces path with data: temp file, fsync, rename, fsync dir.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("user store: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("user store: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("user store: fsync dir: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path (created if missing), so that
// `katka user` and a running server never interleave read-modify-writes.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("user store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("user store lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
