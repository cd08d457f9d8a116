// Package host runs katka's plugins: it discovers them in a directory, verifies
// each executable against the sha256 in its manifest before launch, starts the
// instances the config names, and supervises them (exit detection, restart with
// capped exponential backoff, a timeout on every call, Pdeathsig, logs and
// metrics). Sinks and processors are fed from katka topics at least once.
package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/katka-io/katka/plugins/sdk"
)

// ManifestFile is the manifest's file name inside a plugin's directory.
const ManifestFile = "manifest.yaml"

// Manifest describes one plugin: <dir>/<plugin>/manifest.yaml.
type Manifest struct {
	// Name is what instances refer to in the config.
	Name string `yaml:"name"`
	// Kind is partitioner, processor, sink or source.
	Kind string `yaml:"kind"`
	// Version is the plugin's own version, shown by katka plugin list.
	Version string `yaml:"version"`
	// Command is the executable, a path inside the manifest's directory: not
	// absolute, no ".." element, and no symlink on it may lead out of the
	// directory (enforced when the file is opened, through os.Root).
	Command string `yaml:"command"`
	// Args are passed to Command.
	Args []string `yaml:"args"`
	// SHA256 is the hex sha256 of Command's file; katka refuses to start a
	// plugin whose file does not match.
	SHA256 string `yaml:"sha256"`
	// Env names the variables of katka's environment the plugin also gets,
	// besides the minimal set (BaseEnv); katka's environment may hold
	// credentials, so nothing else is passed.
	Env []string `yaml:"env,omitempty"`

	// Dir is the directory holding the manifest (set by Discover).
	Dir string `yaml:"-"`
}

// Path returns the path of the plugin's executable (for display and build
// scripts; katka itself opens it through os.Root, see openCommand).
func (m Manifest) Path() string {
	return filepath.Join(m.Dir, m.Command)
}

// checkCommand is the lexical half of the confinement of command: the other
// half, symlinks, is os.Root's when the file is opened.
func checkCommand(c string) string {
	switch {
	case c == "":
		return "command: must not be empty (the executable, relative to the manifest)"
	case filepath.IsAbs(c) || strings.HasPrefix(c, "/") || strings.HasPrefix(c, `\`):
		return fmt.Sprintf("command: %q is an absolute path; it must name a file inside the plugin's directory", c)
	case slices.Contains(strings.FieldsFunc(c, func(r rune) bool { return r == '/' || r == '\\' }), ".."):
		return fmt.Sprintf("command: %q contains \"..\"; it must name a file inside the plugin's directory", c)
	case strings.ContainsRune(c, 0):
		return fmt.Sprintf("command: %q contains a NUL byte", c)
	}
	return ""
}

// checkEnvName reports whether n can name a variable of the manifest's env list.
func checkEnvName(n string) bool {
	return n != "" && !strings.ContainsAny(n, "=\x00")
}

// openCommand opens the plugin's executable through an os.Root of its
// directory, so neither the manifest's command nor a symlink on its path can
// reach a file outside the directory, and checks it is an executable file.
func (m Manifest) openCommand() (*os.File, error) {
	if p := checkCommand(m.Command); p != "" {
		return nil, fmt.Errorf("plugin %s: manifest %s: %s", m.Name, filepath.Join(m.Dir, ManifestFile), p)
	}
	root, err := os.OpenRoot(m.Dir)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: plugin directory: %w", m.Name, err)
	}
	defer root.Close()
	f, err := root.Open(m.Command)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: manifest command %q: %w (it must be a file inside %s, and no symlink may lead out of it)", m.Name, m.Command, err, m.Dir)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	} else if err == nil && fi.Mode().Perm()&0o111 == 0 {
		err = fmt.Errorf("not executable (mode %s)", fi.Mode().Perm())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("plugin %s: manifest command %q: %w", m.Name, m.Command, err)
	}
	return f, nil
}

// ErrChecksum is returned when a plugin's executable does not match its manifest.
var ErrChecksum = errors.New("checksum mismatch")

// LoadManifest reads and checks one manifest file.
func LoadManifest(path string) (Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("plugin manifest: %w", err)
	}
	var m Manifest
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Manifest{}, fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	m.Dir = abs
	var probs []string
	if m.Name == "" {
		probs = append(probs, "name: must not be empty")
	}
	if !slices.Contains(sdk.Kinds, m.Kind) {
		probs = append(probs, fmt.Sprintf("kind: %q is not allowed (allowed: %s)", m.Kind, strings.Join(sdk.Kinds, ", ")))
	}
	if p := checkCommand(m.Command); p != "" {
		probs = append(probs, p)
	}
	for i, n := range m.Env {
		if !checkEnvName(n) {
			probs = append(probs, fmt.Sprintf("env[%d]: %q is not a variable name", i, n))
		}
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != sha256.Size {
		probs = append(probs, fmt.Sprintf("sha256: %q is not a hex sha256 (sha256sum %s)", m.SHA256, m.Command))
	}
	if len(probs) > 0 {
		return Manifest{}, fmt.Errorf("plugin manifest %s: %s", path, strings.Join(probs, "; "))
	}
	return m, nil
}

// Discover reads every <dir>/*/manifest.yaml. Bad manifests are returned as
// errors alongside the good ones, so one broken plugin does not hide the rest.
func Discover(dir string) ([]Manifest, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("plugins dir: %w", err)}
	}
	var ms []Manifest
	var errs []error
	seen := map[string]string{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name(), ManifestFile)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		m, err := LoadManifest(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[m.Name]; dup {
			errs = append(errs, fmt.Errorf("plugin manifest %s: name %q is already used by %s", p, m.Name, first))
			continue
		}
		seen[m.Name] = p
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms, errs
}

// FileSHA256 returns the hex sha256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Verify checks the executable (opened inside the plugin's directory)
// against the manifest's sha256. katka checks again at each launch, on the
// very bytes it executes (see launch_linux.go).
func (m Manifest) Verify() error {
	f, err := m.openCommand()
	if err != nil {
		return err
	}
	defer f.Close()
	return m.checkSum(f)
}

// checkSum hashes r and compares the sum with the manifest's.
func (m Manifest) checkSum(r io.Reader) error {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("plugin %s: read executable %s: %w", m.Name, m.Path(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, m.SHA256) {
		return fmt.Errorf("plugin %s: refusing to start %s: %w: manifest says sha256 %s, file has %s (rebuild the manifest only if you trust this file)", m.Name, m.Path(), ErrChecksum, m.SHA256, got)
	}
	return nil
}

// WriteManifest writes m to <m.Dir>/manifest.yaml with the sha256 of its
// command filled in (for build scripts and tests).
func WriteManifest(m Manifest) error {
	sum, err := FileSHA256(m.Path())
	if err != nil {
		return fmt.Errorf("plugin %s: %w", m.Name, err)
	}
	m.SHA256 = sum
	data, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", m.Name, err)
	}
	return os.WriteFile(filepath.Join(m.Dir, ManifestFile), data, 0o644)
}
