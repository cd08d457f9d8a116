package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/httpapi"
	"github.com/katka-io/katka/firmware/selfupdate"
	"github.com/katka-io/katka/firmware/store"
	"github.com/katka-io/katka/sync/mirror"
)

func init() { registerCommand(newSuperviseCmd) }

// newSuperviseCmd is `katka supervise [serve flags]`: runs `katka serve` with
// the same flags as a child, restarts it, and owns self-update's swap.
func newSuperviseCmd() *cobra.Command {
	var cfgPath, dataDir, kafkaAddr, httpAddr string
	cmd := &cobra.Command{
		Use:   "supervise [serve flags]",
		Short: "Run `katka serve` as a child and own self-update: trial, commit, rollback (firmware/README.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigDataDir(cmd, cfgPath, dataDir)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid config: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			su := cfg.Firmware.SelfUpdate
			bin := su.Binary
			if bin == "" {
				if bin, err = os.Executable(); err != nil {
					return err
				}
			}
			log := newLogger(cfg.Log)
			sv, err := selfupdate.NewSupervisor(selfupdate.SupervisorOptions{Binary: bin, Dir: selfUpdateDir(cfg), Args: append([]string{"serve"}, serveArgs()...),
				Enabled: su.Enabled && cfg.Firmware.Enabled, HealthWindow: su.HealthWindow, MaxAttempts: su.MaxAttempts, Log: log})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("supervising katka serve", "binary", bin, "self_update", su.Enabled, "version", version)
			return sv.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "YAML config file (as for serve)")
	f.StringVar(&dataDir, "data-dir", "", "data directory (as for serve)")
	f.StringVar(&kafkaAddr, "kafka-addr", "", "passed to serve")
	f.StringVar(&httpAddr, "http-addr", "", "passed to serve")
	return cmd
}

// serveArgs are the command-line arguments after "supervise".
func serveArgs() []string {
	for i, a := range os.Args {
		if a == "supervise" {
			return os.Args[i+1:]
		}
	}
	return nil
}

func selfUpdateDir(cfg config.Config) string {
	if d := cfg.Firmware.SelfUpdate.Dir; d != "" {
		return d
	}
	return filepath.Join(cfg.DataDir, "selfupdate")
}

var deviceRE = regexp.MustCompile(`[^a-zA-Z0-9._-]`)

// startSelfUpdate starts the serve side of self-update beside the store.
func startSelfUpdate(ctx context.Context, wg *sync.WaitGroup, st *store.Store, cfg config.Config, reg prometheus.Registerer, log *slog.Logger, hs *httpapi.Server) error {
	su := cfg.Firmware.SelfUpdate
	if !su.Enabled {
		return nil
	}
	if hs == nil {
		return fmt.Errorf("firmware.self_update needs the HTTP listener (http.addr) for its health check")
	}
	device := cfg.Sync.Site
	if device == "" {
		device, _ = os.Hostname()
	}
	device = "katka." + deviceRE.ReplaceAllString(device, "_")
	if len(device) > 100 {
		device = device[:100]
	}
	started := time.Now()
	u := selfupdate.NewUpdater(selfupdate.Options{Store: st, Prefix: su.Name, Dir: selfUpdateDir(cfg), Version: version,
		Binary: os.Getenv(selfupdate.EnvSupervised), Trial: os.Getenv(selfupdate.EnvTrial), Device: device,
		Healthy:    func(ctx context.Context) error { return serveHealthy(ctx, cfg, hs, started) },
		Restart:    func() { syscall.Kill(os.Getpid(), syscall.SIGTERM) },
		Registerer: reg, Log: log})
	hs.AddStatus("selfupdate", func() any { return u.Status() })
	wg.Go(func() { u.Run(ctx) })
	return nil
}

// serveHealthy is the health a new binary must reach in its window: storage
// recovered (the broker opened before this runs), /healthz answering on the
// HTTP listener, the Kafka listeners accepting connections, and sync running
// (its status file written since this process started).
func serveHealthy(ctx context.Context, cfg config.Config, hs *httpapi.Server, started time.Time) error {
	if cfg.HTTP.TLS.ClientAuth == "require" {
		// No client certificate of its own to show: the listener accepting
		// connections is what can be checked.
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", hs.Addr().String())
		if err != nil {
			return fmt.Errorf("http listener: %w", err)
		}
		conn.Close()
		return kafkaAndSyncHealthy(ctx, cfg, started)
	}
	scheme, tr := "http", &http.Transport{}
	if cfg.HTTP.TLS.CertFile != "" {
		// Talking to itself on its own address: the certificate names a host.
		scheme, tr.TLSClientConfig = "https", &tls.Config{InsecureSkipVerify: true}
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+hs.Addr().String()+"/healthz", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return kafkaAndSyncHealthy(ctx, cfg, started)
}

// kafkaAndSyncHealthy checks the Kafka listeners accept connections and sync
// wrote its status since started.
func kafkaAndSyncHealthy(ctx context.Context, cfg config.Config, started time.Time) error {
	addrs := []string{cfg.Kafka.Addr}
	for _, l := range cfg.Kafka.Listeners {
		addrs = append(addrs, l.Addr)
	}
	for _, a := range addrs {
		if a == "" || strings.HasSuffix(a, ":0") {
			continue
		}
		d := net.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return fmt.Errorf("kafka listener %s: %w", a, err)
		}
		conn.Close()
	}
	if cfg.Sync.Enabled {
		s, err := mirror.ReadStatusFile(mirror.StatusPath(cfg.DataDir, cfg.Sync.StatusFile))
		if err != nil {
			return err
		}
		if s.Updated.Before(started) {
			return fmt.Errorf("sync status not written since start")
		}
	}
	return nil
}

// printSelfUpdateStatus prints GET /v1/status/selfupdate when self-update runs.
func printSelfUpdateStatus(c *http.Client, addr string) {
	resp, err := c.Get("http://" + addr + "/v1/status/selfupdate")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var st selfupdate.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st) != nil {
		return
	}
	sup := "not supervised (updates are not installed)"
	if st.Supervised {
		sup = "supervised, binary " + st.Binary
	}
	fmt.Printf("self-update: artefact %s, running %s, %s\n", st.Artefact, st.RunningVersion, sup)
	if st.Previous != "" {
		fmt.Printf("  previous binary: %s (%s.prev)\n", st.Previous, st.Binary)
	}
	if st.Trial != nil {
		fmt.Printf("  on trial: %s (attempt %d, started %s)\n", st.Trial.Version, st.Trial.Attempts, st.Trial.Started.Format(time.RFC3339))
	}
	if len(st.Results) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tVERSION\tFROM\tRESULT\tDETAIL")
		for _, r := range st.Results {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Version, r.From, r.Result, r.Detail)
		}
		tw.Flush()
	}
	for v, why := range st.Bad {
		fmt.Printf("  bad (never tried again): %s: %s\n", v, why)
	}
	for v, why := range st.Rejected {
		fmt.Printf("  rejected (not staged): %s: %s\n", v, why)
	}
}
