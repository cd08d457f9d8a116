// Package packaging builds katka's Debian packages with nfpm
// (github.com/goreleaser/nfpm/v2) used as a library: the static binary, the
// systemd unit, /etc/katka/katka.yaml as a conffile and the maintainer scripts
// that create the katka user and enable the service.
package packaging

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

//go:embed katka.service scripts copyright lintian-overrides
var assets embed.FS

// Maintainer is the package's Maintainer field.
const Maintainer = "katka maintainers <maintainers@katka-io.invalid>"

// Arches maps the Debian architectures katka ships to the GOARCH/GOARM they
// are built with.
var Arches = map[string]struct{ GOARCH, GOARM string }{
	"amd64": {"amd64", ""},
	"arm64": {"arm64", ""},
	"armhf": {"arm", "7"},
}

// Installed paths.
const (
	BinPath    = "/usr/bin/katka"
	UnitPath   = "/lib/systemd/system/katka.service"
	ConfigPath = "/etc/katka/katka.yaml"
	DataDir    = "/var/lib/katka"
)

// Options says what one package holds.
type Options struct {
	// Version is katka's version as `git describe` prints it (v1.2.3,
	// v1.2.3-4-gabcdef0-dirty, or a bare commit); DebVersion makes a Debian
	// version of it.
	Version string
	// Arch is the Debian architecture: amd64, arm64 or armhf.
	Arch string
	// Binary is the static katka binary built for Arch.
	Binary string
	// Config is configs/katka.yaml; the package installs PackagedConfig of it.
	Config []byte
	// OutDir receives katka_<version>_<arch>.deb.
	OutDir string
	// MTime stamps every file and the changelog (reproducible builds): the
	// commit's time; zero is 2026-01-01.
	MTime time.Time
}

// Build writes one .deb and returns its path.
func Build(o Options) (string, error) {
	if _, ok := Arches[o.Arch]; !ok {
		return "", fmt.Errorf("arch %q: allowed: amd64, arm64, armhf", o.Arch)
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return "", fmt.Errorf("katka binary for %s: %w", o.Arch, err)
	}
	cfg, err := PackagedConfig(o.Config)
	if err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "katka-deb-")
	if err != nil {
		return "", fmt.Errorf("staging dir: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := os.CopyFS(stage, assets); err != nil {
		return "", fmt.Errorf("staging package files: %w", err)
	}
	cfgFile := filepath.Join(stage, "katka.yaml")
	if err := os.WriteFile(cfgFile, cfg, 0o640); err != nil {
		return "", fmt.Errorf("staging config: %w", err)
	}
	mtime := o.MTime
	if mtime.IsZero() {
		mtime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	version := DebVersion(o.Version)
	changelog := filepath.Join(stage, "changelog.gz")
	if err := writeChangelog(changelog, version, o.Version, mtime); err != nil {
		return "", err
	}
	info := &nfpm.Info{
		Name:          "katka",
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    Maintainer,
		Description: "compact Kafka-compatible streaming broker for edge gateways\n" +
			"katka keeps partitioned, durable write-ahead-log topics that survive power\n" +
			"cuts, speaks the Apache Kafka wire protocol, ingests MQTT and sensor data,\n" +
			"runs plugins and mirrors topics to a central Kafka cluster. One static\n" +
			"binary, run by systemd as the katka user with its data in /var/lib/katka.",
		Homepage: "https://github.com/katka-io/katka",
		MTime:    mtime,
		Overridables: nfpm.Overridables{
			// adduser for the postinst; init-system-helpers (essential)
			// brings deb-systemd-helper.
			Depends: []string{"adduser"},
			Contents: files.Contents{
				{Source: filepath.Join(stage, "katka.service"), Destination: UnitPath,
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: o.Binary, Destination: BinPath,
					FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: cfgFile, Destination: ConfigPath, Type: files.TypeConfig,
					FileInfo: &files.ContentFileInfo{Mode: 0o640}},
				{Source: filepath.Join(stage, "copyright"), Destination: "/usr/share/doc/katka/copyright",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: changelog, Destination: "/usr/share/doc/katka/changelog.gz",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(stage, "lintian-overrides"), Destination: "/usr/share/lintian/overrides/katka",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(stage, "scripts", "postinst"),
				PreRemove:   filepath.Join(stage, "scripts", "prerm"),
				PostRemove:  filepath.Join(stage, "scripts", "postrm"),
			},
			Deb: nfpm.Deb{Compression: "gzip"}, // xz in pure Go took ~50 s a package on the shared box
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("package %s: %w", o.Arch, err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("out dir: %w", err)
	}
	out := filepath.Join(o.OutDir, fmt.Sprintf("katka_%s_%s.deb", version, o.Arch))
	var buf bytes.Buffer
	if err := pkg.Package(info, &buf); err != nil {
		return "", fmt.Errorf("package %s: %w", o.Arch, err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	return out, nil
}

// writeChangelog writes the Debian changelog (one entry for this build) that
// a native package carries as /usr/share/doc/katka/changelog.gz.
func writeChangelog(path, debVersion, gitVersion string, when time.Time) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.ModTime = when
	fmt.Fprintf(zw, "katka (%s) unstable; urgency=medium\n\n  * Built from katka %s; the changes are in the git history.\n\n -- %s  %s\n",
		debVersion, gitVersion, Maintainer, when.UTC().Format(time.RFC1123Z))
	if err := zw.Close(); err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	return nil
}

var describeRe = regexp.MustCompile(`^v?(\d+\.\d+\.\d+)(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)

// DebVersion turns `git describe` output into a Debian version that sorts
// right: v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3+git4.abc, and a bare
// commit abc (no tag yet) -> 0.0.0~gitabc; -dirty becomes +dirty.
func DebVersion(v string) string {
	if m := describeRe.FindStringSubmatch(v); m != nil {
		s := m[1]
		if m[2] != "" {
			s += "+git" + m[2] + "." + m[3]
		}
		if m[4] != "" {
			s += "+dirty"
		}
		return s
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.', r == '+', r == '~':
			return r
		}
		return '.'
	}, v)
	if clean == "" {
		clean = "dev"
	}
	return "0.0.0~git" + clean
}

// configEdits are the changes from configs/katka.yaml (the built-in defaults,
// made for `make run` in a checkout) to the packaged /etc/katka/katka.yaml.
// Each old text must occur exactly once, so a change of configs/katka.yaml
// that would silently drop one fails the build.
var configEdits = []struct{ old, new string }{
	{"# katka default configuration.\n",
		"# katka configuration, installed by the katka package as /etc/katka/katka.yaml\n" +
			"# (a conffile: your changes are kept on upgrade). Apply changes with\n" +
			"# `systemctl restart katka`; check them first with\n" +
			"# `katka config check --config /etc/katka/katka.yaml`.\n" +
			"# The lines that differ from the built-in defaults say \"packaged:\".\n"},
	{"data_dir: ./data\n",
		"# packaged: the service's StateDirectory, the one writable path of the unit.\n" +
			"data_dir: " + DataDir + "\n"},
	{"  simulated:\n    # Turn the source on. Allowed: true, false. Default: true\n    enabled: true\n",
		"  simulated:\n    # Turn the source on. Allowed: true, false. Default: true\n" +
			"    # packaged: off, a real gateway should not fill its disk with made-up readings.\n" +
			"    enabled: false\n"},
	{"  dir: ./plugins\n",
		"  # packaged: read-only for the service, installed by the administrator.\n" +
			"  dir: /usr/local/lib/katka/plugins\n"},
}

// PackagedConfig derives /etc/katka/katka.yaml from configs/katka.yaml.
func PackagedConfig(src []byte) ([]byte, error) {
	s := string(src)
	for _, e := range configEdits {
		if n := strings.Count(s, e.old); n != 1 {
			return nil, fmt.Errorf("packaged config: %q occurs %d times in configs/katka.yaml, want once", e.old, n)
		}
		s = strings.Replace(s, e.old, e.new, 1)
	}
	return []byte(s), nil
}
