package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/httpapi"
	"github.com/katka-io/katka/firmware"
	"github.com/katka-io/katka/firmware/store"
)

func init() { registerCommand(newFirmwareCmd) }

func newFirmwareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Signed firmware distribution: keys, publishing, listing, edge status",
	}
	cmd.AddCommand(newFirmwareKeygenCmd(), newFirmwareRotateCmd(), newFirmwarePublishCmd(), newFirmwareListCmd(), newFirmwareStatusCmd())
	return cmd
}

func newFirmwareKeygenCmd() *cobra.Command {
	var dir string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a root key, a targets (signing) key and root.json version 1 in --dir",
		Long: "Make a root key, a targets key and root.json (version 1, signed by the root key,\n" +
			"trusting the targets key for manifests) in --dir. root.json is the trust anchor\n" +
			"every edge pins (firmware.root_file); keep root.key offline.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			rootPub, rootPriv, err := firmware.GenerateKey()
			if err != nil {
				return err
			}
			tPub, tPriv, err := firmware.GenerateKey()
			if err != nil {
				return err
			}
			rootJSON := filepath.Join(dir, "root.json")
			if _, err := os.Stat(rootJSON); err == nil {
				return fmt.Errorf("%s exists: not overwriting a root of trust", rootJSON)
			}
			for name, k := range map[string]ed25519.PrivateKey{"root.key": rootPriv, "targets.key": tPriv} {
				if _, err := firmware.WriteKeyPair(filepath.Join(dir, name), k); err != nil {
					return err
				}
			}
			env, err := firmware.Sign(firmware.NewRoot(1, time.Now().Add(expires), []ed25519.PublicKey{rootPub}, []ed25519.PublicKey{tPub}), rootPriv)
			if err != nil {
				return err
			}
			if err := writeJSONFile(rootJSON, env); err != nil {
				return err
			}
			fmt.Printf("root key     %s  (%s, keep offline)\n", firmware.KeyID(rootPub)[:16], filepath.Join(dir, "root.key"))
			fmt.Printf("targets key  %s  (%s, signs manifests)\n", firmware.KeyID(tPub)[:16], filepath.Join(dir, "targets.key"))
			fmt.Printf("root.json    version 1, expires %s\n", time.Now().Add(expires).UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "firmware-keys", "directory for root.key, targets.key, their .pub files and root.json")
	cmd.Flags().DurationVar(&expires, "expires", 5*365*24*time.Hour, "how long root.json is valid")
	return cmd
}

func newFirmwareRotateCmd() *cobra.Command {
	var rootPath, out string
	var signKeys, rootPubs, targetPubs []string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make the next root version (new root and/or targets keys), signed by the old and new root keys",
		Long: "Make root version N+1 from --root (version N): its root keys are --root-pub, its\n" +
			"targets keys --targets-pub; sign it with --sign for a key of version N's root role\n" +
			"and for one of the new root role (give both). Publish it with `firmware publish --root`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(rootPath)
			if err != nil {
				return err
			}
			env, err := firmware.ParseEnvelope(data)
			if err != nil {
				return err
			}
			tr, err := firmware.NewTrust(env)
			if err != nil {
				return fmt.Errorf("%s: %w", rootPath, err)
			}
			readPubs := func(paths []string) ([]ed25519.PublicKey, error) {
				var ks []ed25519.PublicKey
				for _, p := range paths {
					k, err := firmware.ReadPublicKey(p)
					if err != nil {
						return nil, err
					}
					ks = append(ks, k)
				}
				return ks, nil
			}
			rp, err := readPubs(rootPubs)
			if err != nil {
				return err
			}
			tp, err := readPubs(targetPubs)
			if err != nil {
				return err
			}
			if len(rp) == 0 || len(tp) == 0 {
				return errors.New("give at least one --root-pub and one --targets-pub")
			}
			var privs []ed25519.PrivateKey
			for _, p := range signKeys {
				k, err := firmware.ReadPrivateKey(p)
				if err != nil {
					return err
				}
				privs = append(privs, k)
			}
			next, err := firmware.Sign(firmware.NewRoot(tr.Root().Version+1, time.Now().Add(expires), rp, tp), privs...)
			if err != nil {
				return err
			}
			if _, err := tr.Update(next); err != nil {
				return fmt.Errorf("the new root would be refused by edges on version %d: %w", tr.Root().Version, err)
			}
			if err := writeJSONFile(out, next); err != nil {
				return err
			}
			fmt.Printf("root.json version %d written to %s\n", tr.Root().Version, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rootPath, "root", "firmware-keys/root.json", "the current root.json")
	f.StringArrayVar(&signKeys, "sign", nil, "private key to sign with (repeat: an old and a new root key)")
	f.StringArrayVar(&rootPubs, "root-pub", nil, "public key of the new root role (repeatable)")
	f.StringArrayVar(&targetPubs, "targets-pub", nil, "public key of the new targets role (repeatable)")
	f.DurationVar(&expires, "expires", 5*365*24*time.Hour, "how long the new root is valid")
	f.StringVar(&out, "out", "root-next.json", "where to write the new root")
	return cmd
}

func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func newFirmwarePublishCmd() *cobra.Command {
	var kf kafkaFlags
	var o firmware.BuildOptions
	var keyPath, manifestTopic, chunkTopic string
	var roots, hardware, labels, waves []string
	var expires time.Duration
	var chunk string
	var manifestOnly bool
	cmd := &cobra.Command{
		Use:   "publish FILE",
		Short: "Sign FILE's manifest and write it and FILE's chunks to a Kafka cluster (central, or a katka)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.ChunkSize, err = parseSize(chunk); err != nil {
				return fmt.Errorf("--chunk-size: %w", err)
			}
			o.Expires = time.Now().Add(expires)
			o.Selector.Hardware = hardware
			lm, _, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			if len(lm) > 0 {
				o.Selector.Labels = lm
			}
			for _, spec := range waves {
				w, err := parseWave(spec)
				if err != nil {
					return fmt.Errorf("--wave %q: %w", spec, err)
				}
				o.Waves = append(o.Waves, w)
			}
			key, err := firmware.ReadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			m, err := firmware.BuildManifest(args[0], o)
			if err != nil {
				return err
			}
			// Check the signature against the root being published, so a wrong
			// key is found here rather than at every edge.
			var rootEnvs [][]byte
			for _, rp := range roots {
				data, err := os.ReadFile(rp)
				if err != nil {
					return err
				}
				rootEnvs = append(rootEnvs, data)
			}
			if len(rootEnvs) > 0 {
				env0, err := firmware.ParseEnvelope(rootEnvs[0])
				if err != nil {
					return err
				}
				tr, err := firmware.NewTrust(env0)
				if err != nil {
					return err
				}
				for _, r := range rootEnvs[1:] {
					e, err := firmware.ParseEnvelope(r)
					if err != nil {
						return err
					}
					if _, err := tr.Update(e); err != nil {
						return err
					}
				}
				se, _ := firmware.Sign(m, key)
				if _, err := tr.VerifyManifest(se, time.Now()); err != nil {
					return fmt.Errorf("root v%d would reject this manifest: %w", tr.Root().Version, err)
				}
			}
			cl, err := kf.client(kgo.ProducerBatchMaxBytes(int32(o.ChunkSize+64<<10)), kgo.MaxBufferedBytes(64<<20),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := signalContext()
			defer cancel()
			topics := firmware.Topics{Manifests: manifestTopic, Chunks: chunkTopic}
			if err := firmware.EnsureTopics(ctx, cl, topics, o.ChunkSize); err != nil {
				return err
			}
			p := firmware.NewPublisher(cl, topics)
			for _, r := range rootEnvs {
				if err := p.PublishRoot(ctx, r); err != nil {
					return fmt.Errorf("publish root: %w", err)
				}
			}
			if manifestOnly {
				if err := p.PublishManifest(ctx, m, key); err != nil {
					return err
				}
				fmt.Printf("published the manifest of %s %s (paused %v, aborted %v, revokes %v), expires %s\n", m.Name, m.Version, m.Paused, m.Aborted, m.Revokes, m.Expires.Format(time.RFC3339))
				return nil
			}
			t0 := time.Now()
			last := time.Time{}
			show := func(sent int64, final bool) {
				if !final && time.Since(last) < 200*time.Millisecond {
					return
				}
				last = time.Now()
				rate := float64(sent) / max(time.Since(t0).Seconds(), 1e-3) / (1 << 20)
				pct := 100.0
				if m.Size > 0 {
					pct = float64(sent) * 100 / float64(m.Size)
				}
				fmt.Fprintf(os.Stderr, "\rpublishing %s %s: %s / %s (%3.0f%%) %.1f MiB/s   ", m.Name, m.Version, fmtBytes(sent), fmtBytes(m.Size), pct, rate)
			}
			if err := p.Publish(ctx, args[0], m, key, func(sent int64) { show(sent, false) }); err != nil {
				fmt.Fprintln(os.Stderr)
				return err
			}
			show(m.Size, true)
			fmt.Fprintln(os.Stderr)
			fmt.Printf("published %s %s: %d bytes, %d chunks of %d, sha256 %s, expires %s\n", m.Name, m.Version, m.Size, len(m.Chunks), m.ChunkSize, m.SHA256, m.Expires.Format(time.RFC3339))
			return nil
		},
	}
	kf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "artefact name (a-z A-Z 0-9 . _ -)")
	f.StringVar(&o.Version, "version", "", "artefact version, e.g. 1.4.2 (ordered part by part, numbers numerically)")
	f.StringVar(&keyPath, "key", "firmware-keys/targets.key", "targets private key that signs the manifest")
	f.StringArrayVar(&roots, "root", nil, "root.json to publish first and check the signature against (repeat in version order after a rotation)")
	f.StringArrayVar(&hardware, "hardware", nil, "selector: device hardware class (repeatable; none = every class)")
	f.StringArrayVar(&labels, "label", nil, "selector: device label key=value that must match (repeatable)")
	f.DurationVar(&expires, "expires", firmware.DefaultExpiry, "how long the manifest is valid")
	f.StringVar(&chunk, "chunk-size", "256KiB", "chunk size (one Kafka record each)")
	f.StringArrayVar(&waves, "wave", nil, "rollout wave, in order: PERCENT% and/or label=value pairs, after=DURATION since the previous wave, comma-separated (e.g. --wave 10% --wave line=3,after=24h --wave 100%,after=48h)")
	f.BoolVar(&o.Paused, "pause", false, "sign the rollout as paused (devices asking with ?device= get no new download)")
	f.BoolVar(&o.Aborted, "abort", false, "abort this version: edges delete it and never serve it again")
	f.StringArrayVar(&o.Revokes, "revoke", nil, "another version of the same name that edges delete and never serve again (repeatable)")
	f.BoolVar(&manifestOnly, "manifest-only", false, "publish only the re-signed manifest (the chunks are already there): for --pause, --abort, --revoke or a new --expires")
	f.BoolVar(&o.Downgrade, "downgrade", false, "sign this as an intended downgrade (passes anti-rollback)")
	f.StringVar(&manifestTopic, "manifest-topic", firmware.DefaultManifestTopic, "compacted manifest topic")
	f.StringVar(&chunkTopic, "chunk-topic", firmware.DefaultChunkTopic, "chunk topic")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("version")
	return cmd
}

// parseWave parses a --wave spec: "10%", "line=3,after=24h", "100%,after=48h".
func parseWave(spec string) (firmware.Wave, error) {
	var w firmware.Wave
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		switch {
		case strings.HasSuffix(part, "%"):
			if _, err := fmt.Sscan(strings.TrimSuffix(part, "%"), &w.Percent); err != nil {
				return w, fmt.Errorf("%q is not a percentage", part)
			}
		case strings.HasPrefix(part, "after="):
			w.After = strings.TrimPrefix(part, "after=")
		default:
			k, v, ok := strings.Cut(part, "=")
			if !ok || k == "" {
				return w, fmt.Errorf("%q is not PERCENT%%, after=DURATION or label=value", part)
			}
			if w.Labels == nil {
				w.Labels = map[string]string{}
			}
			w.Labels[k] = v
		}
	}
	return w, nil
}

func parseSize(s string) (int, error) {
	mult := 1
	for _, u := range []struct {
		suf string
		m   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000000}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 256KiB)", s)
	}
	if n*mult > firmware.MaxChunkSize {
		return 0, fmt.Errorf("%d bytes is above the limit %d", n*mult, firmware.MaxChunkSize)
	}
	return n * mult, nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newFirmwareListCmd() *cobra.Command {
	var kf kafkaFlags
	var topic, rootPath string
	var listOut *outputFlag
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the manifests in a cluster's manifest topic (verified against --root when given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			cl, err := kf.client()
			if err != nil {
				return err
			}
			cl.Close()
			recs, err := firmware.Manifests(ctx, strings.Split(kf.brokers, ","), topic)
			if err != nil {
				return err
			}
			var tr *firmware.Trust
			if rootPath != "" {
				data, err := os.ReadFile(rootPath)
				if err != nil {
					return err
				}
				env, err := firmware.ParseEnvelope(data)
				if err != nil {
					return err
				}
				if tr, err = firmware.NewTrust(env); err != nil {
					return err
				}
				for v := 2; ; v++ {
					r, ok := recs[firmware.RootKey(v)]
					if !ok {
						break
					}
					e, err := firmware.ParseEnvelope(r)
					if err == nil {
						_, err = tr.Update(e)
					}
					if err != nil {
						fmt.Fprintf(os.Stderr, "root v%d: %v\n", v, err)
						break
					}
				}
			}
			keys := make([]string, 0, len(recs))
			for k := range recs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			rows := []manifestRow{}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tCHUNKS\tHARDWARE\tEXPIRES\tSIGNATURE")
			for _, k := range keys {
				if strings.HasPrefix(k, firmware.RootKeyPrefix) {
					continue
				}
				env, err := firmware.ParseEnvelope(recs[k])
				var m firmware.Manifest
				if err == nil {
					err = json.Unmarshal(env.Signed, &m)
				}
				if err != nil {
					rows = append(rows, manifestRow{Key: k, Error: "malformed: " + err.Error()})
					fmt.Fprintf(tw, "%s\t?\t?\t?\t?\t?\tmalformed: %v\n", k, err)
					continue
				}
				sig := "not checked (no --root)"
				if tr != nil {
					sig = "ok (root v" + fmt.Sprint(tr.Root().Version) + ")"
					if _, err := tr.VerifyManifest(env, time.Now()); err != nil {
						sig = err.Error()
					}
				}
				hw := strings.Join(m.Selector.Hardware, ",")
				if hw == "" {
					hw = "*"
				}
				rows = append(rows, manifestRow{Key: k, Name: m.Name, Version: m.Version, Size: m.Size, Chunks: len(m.Chunks),
					Hardware: m.Selector.Hardware, Expires: m.Expires, Signature: sig})
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, m.Version, fmtBytes(m.Size), len(m.Chunks), hw, m.Expires.Format(time.RFC3339), sig)
			}
			if listOut.json() {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			return tw.Flush()
		},
	}
	kf.add(cmd)
	cmd.Flags().StringVar(&topic, "manifest-topic", firmware.DefaultManifestTopic, "manifest topic")
	cmd.Flags().StringVar(&rootPath, "root", "", "root.json to verify the manifests with")
	listOut = addOutputFlag(cmd)
	return cmd
}

// firmwareStatus is the part of GET /v1/status/firmware the status command prints.
type firmwareStatus struct {
	Dir        string `json:"dir"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
	RootVer    int    `json:"root_version"`
	Artefacts  []struct {
		Name          string `json:"name"`
		Version       string `json:"version"`
		State         string `json:"state"`
		Size          int64  `json:"size"`
		ChunksPresent int    `json:"chunks_present"`
		ChunksTotal   int    `json:"chunks_total"`
		Reason        string `json:"reason"`
	} `json:"artefacts"`
	Rejected []struct {
		Time    time.Time `json:"time"`
		Name    string    `json:"name"`
		Version string    `json:"version"`
		Reason  string    `json:"reason"`
		Detail  string    `json:"detail"`
	} `json:"rejected"`
}

func newFirmwareStatusCmd() *cobra.Command {
	var addr string
	var asJSON bool
	var stOut *outputFlag
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running katka's firmware store: artefacts, download progress, rejections",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + addr + "/v1/status/firmware")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /v1/status/firmware: %s: %s (is firmware.enabled on?)", resp.Status, strings.TrimSpace(string(body)))
			}
			if asJSON || stOut.json() {
				_, err := os.Stdout.Write(body)
				return err
			}
			var st firmwareStatus
			if err := json.Unmarshal(body, &st); err != nil {
				return err
			}
			fmt.Printf("store %s, %s of %s used, root v%d\n", st.Dir, fmtBytes(st.UsedBytes), fmtBytes(st.QuotaBytes), st.RootVer)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tSIZE\tCHUNKS")
			for _, a := range st.Artefacts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\n", a.Name, a.Version, a.State, fmtBytes(a.Size), a.ChunksPresent, a.ChunksTotal)
			}
			tw.Flush()
			if len(st.Rejected) > 0 {
				fmt.Println("rejected:")
				tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tNAME\tVERSION\tREASON\tDETAIL")
				for _, r := range st.Rejected {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Name, r.Version, r.Reason, r.Detail)
				}
				tw.Flush()
			}
			printSelfUpdateStatus(c, addr)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "http", "127.0.0.1:8092", "HTTP address of the running katka")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (same as --output json)")
	stOut = addOutputFlag(cmd)
	return cmd
}

// startFirmware starts the firmware store when firmware.enabled: it reads the
// local manifest and chunk topics, and its device routes and status join the
// HTTP server (when there is one).
func startFirmware(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, log *slog.Logger, hs *httpapi.Server) error {
	if !cfg.Firmware.Enabled {
		return nil
	}
	httpAddr := cfg.HTTP.Addr
	if hs != nil {
		httpAddr = hs.Addr().String()
	}
	st, err := store.New(store.Options{Broker: b, Config: cfg.Firmware, DataDir: cfg.DataDir, HTTPAddr: httpAddr, Registerer: reg, Log: log})
	if err != nil {
		return err
	}
	if hs != nil {
		hs.AddRoutes(st.Routes)
		hs.AddStatus("firmware", func() any { return st.Status() })
	}
	if err := startSelfUpdate(ctx, wg, st, cfg, reg, log, hs); err != nil {
		return err
	}
	wg.Go(func() { st.Run(ctx) })
	log.Info("firmware store started", "root_version", st.Status().RootVersion, "quota", cfg.Firmware.Quota.String())
	return nil
}
