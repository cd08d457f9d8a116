package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/httpapi"
	"github.com/katka-io/katka/appliance/kafka"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
)

func newServeCmd() *cobra.Command {
	var cfgPath, dataDir, kafkaAddr, httpAddr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker (Kafka listener, HTTP health/metrics/admin, sensors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			if fl.Changed("kafka-addr") {
				cfg.Kafka.Addr = kafkaAddr
			}
			if fl.Changed("http-addr") {
				cfg.HTTP.Addr = httpAddr
			}
			if err := validateConfig(cfg); err != nil {
				return err
			}
			return serve(cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "YAML config file (default: built-in defaults, the same as configs/katka.yaml)")
	f.StringVar(&dataDir, "data-dir", "", "data directory (overrides data_dir)")
	f.StringVar(&kafkaAddr, "kafka-addr", "", "Kafka listener host:port, empty to disable (overrides kafka.addr)")
	f.StringVar(&httpAddr, "http-addr", "", "HTTP listener host:port, empty to disable (overrides http.addr)")
	return cmd
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// serve runs katka until SIGINT or SIGTERM, then shuts down cleanly: sensors
// stop, listeners close, every partition is flushed and the data dir unlocked.
func serve(cfg config.Config) error {
	// SIGINT and SIGTERM are caught from the first moment: one that comes
	// while katka starts (its HTTP listener already answers, systemd's stop
	// right after start) is a clean shutdown once the start is done, never
	// the default kill.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	log := newLogger(cfg.Log)
	slog.SetDefault(log)
	memLimit := setMemoryLimit(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(sensors.Collectors()...)
	metrics := broker.NewMetrics(reg)
	stopPprof, err := startPprof(log)
	if err != nil {
		return err
	}
	if stopPprof != nil {
		defer stopPprof()
	}

	t0 := time.Now()
	b, err := broker.Open(broker.Options{
		DataDir:                cfg.DataDir,
		Fsync:                  broker.FsyncMode(cfg.Storage.Fsync),
		FsyncInterval:          cfg.Storage.FsyncInterval,
		SyncfsMin:              cmp.Or(cfg.Storage.SyncfsMin, -1),
		SegmentBytes:           int(cfg.Storage.SegmentBytes),
		CacheSegments:          cfg.Storage.SegmentCache,
		RetentionCheckInterval: cfg.Storage.RetentionCheckInterval,
		Defaults:               broker.TopicConfig{RetentionMs: retentionMs(cfg.Topics.Retention), RetentionBytes: int64(cfg.Topics.RetentionBytes), OnFull: cfg.Topics.OnFull},
		QuotaBytes:             int64(cfg.Storage.Quota),
		MinFreeBytes:           int64(cfg.Storage.MinFree),
		AutoCreate:             cfg.Topics.AutoCreate,
		DefaultPartitions:      cfg.Topics.DefaultPartitions,
		MaxPartitions:          cfg.Topics.MaxPartitions,
		Logger:                 log,
		Metrics:                metrics,
		// In a cell no partition takes writes before the cell said who leads it.
		ReplicaGate: cfg.Cell.Enabled(),
	})
	if err != nil {
		return err
	}
	registerDiskGauges(reg, b, cfg.DataDir)
	var closers []func()
	shutdown := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		if err := b.Close(); err != nil {
			log.Error("closing broker", "err", err)
		}
	}
	for _, t := range cfg.Topics.Create {
		if _, err := b.Topic(t.Name); err == nil {
			continue
		}
		tc := broker.TopicConfig{RetentionBytes: int64(t.RetentionBytes), OnFull: t.OnFull, CleanupPolicy: t.CleanupPolicy, CompressionType: t.CompressionType}
		if t.Retention != 0 {
			tc.RetentionMs = retentionMs(t.Retention)
		}
		if _, err := b.CreateTopic(t.Name, t.Partitions, tc); err != nil {
			shutdown()
			return err
		}
	}
	authz, err := openAuthorizer(cfg, log) // ACLs (acl.go), after the broker locked the data dir
	if err != nil {
		shutdown()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var hs *httpapi.Server
	if cfg.HTTP.Addr != "" {
		hs, err = httpapi.Listen(httpapi.Options{Addr: cfg.HTTP.Addr, Broker: b, Limits: cfg.HTTP.Limits, Gatherer: reg, Logger: log, Starting: true,
			Security: httpapi.Security{TLS: cfg.HTTP.TLS, Tokens: cfg.HTTP.Tokens, MetricsAuth: cfg.HTTP.MetricsAuth, Authorizer: authz}})
		if err != nil {
			shutdown()
			return err
		}
		closers = append(closers, func() {
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			hs.Shutdown(sctx)
		})
		log.Info("http listening", "addr", hs.Addr().String(), "tls", cfg.HTTP.TLS.CertFile != "", "tokens", len(cfg.HTTP.Tokens))
	}
	cell, err := startCell(b, cfg, reg, log)
	if err != nil {
		shutdown()
		return err
	}
	if cell != nil {
		closers = append(closers, func() { cell.Close() })
		if hs != nil {
			hs.SetCell(cell) // GET /v1/cell (and /v1/status/cell), DELETE /v1/cell/nodes/{id}
		}
	}
	if cfg.Kafka.Addr != "" || len(cfg.Kafka.Listeners) > 0 {
		if startKafka == nil {
			log.Warn("kafka listener not built into this binary", "addr", cfg.Kafka.Addr)
		} else {
			kc, err := startKafka(ctx, b, cfg, reg, log, authz)
			if err != nil {
				shutdown()
				return err
			}
			closers = append(closers, func() { kc.Close() })
			if g, ok := kc.(httpapi.Groups); ok && hs != nil {
				hs.SetGroups(g)                              // the REST proxy's consumers and the console's group views use the Kafka listener's coordinators (in a cell, those of this node)
				closers = append(closers, hs.CloseConsumers) // they commit and leave before the groups close
			}
		}
	}
	// links logs the state changes of the sync links and the inputs (lost,
	// back after N s) once each, and serves them as katka_link_up and
	// /v1/status/links.
	links := linkstate.NewRegistry(reg)
	var wg sync.WaitGroup
	for _, start := range []func() error{
		func() error { return startFirmware(ctx, &wg, b, cfg, reg, log, hs) }, // before sync: creates the local firmware topics
		func() error { return startSync(ctx, &wg, b, cfg, reg, links, log) },
		func() error { return startPlugins(ctx, &wg, b, cfg, reg, links, log) },
		func() error { return startSensors(ctx, &wg, b, cfg.Sensors, links, log) }, // may use partitioner plugins
	} {
		if err := start(); err != nil {
			cancel()
			wg.Wait()
			shutdown()
			return err
		}
	}
	if hs != nil {
		hs.AddStatus("inputs", func() any { return inputsStatus(cfg.Sensors, links.Snapshot()) })
		hs.AddStatus("links", func() any { return links.Snapshot() }) // up/down of every link and input
	}
	if hs != nil && syncStatus != nil {
		hs.AddStatus("sync", func() any { return syncStatus() })
	}
	if hs != nil && pluginsStatus != nil {
		hs.AddStatus("plugins", func() any { return pluginsStatus() })
	}
	closers = append(closers, func() { cancel(); wg.Wait() })
	log.Info("katka started", "version", version, "data_dir", cfg.DataDir, "fsync", cfg.Storage.Fsync, "memory_limit", memLimit, "took", time.Since(t0).Round(time.Millisecond))
	if hs != nil {
		hs.SetReady() // /healthz: 503 "starting" until now, after the log says so
	}
	// Recovery is done and every listener accepts: a Type=notify unit is up.
	sd := &sdNotifier{log: log}
	wdCtx, wdStop := context.WithCancel(ctx)
	sd.watchdog(wdCtx, func() { b.PartitionCount() })
	sd.ready(fmt.Sprintf("serving %d partitions", b.PartitionCount()))

	s := <-sig
	log.Info("shutting down", "signal", s.String())
	sd.stopping()
	wdStop()
	sd.wait()
	shutdown()
	log.Info("stopped")
	return nil
}

// setMemoryLimit gives the Go runtime katka's soft memory limit
// (memory_limit, derived from the client budgets when 0, see
// config.EffectiveMemoryLimit), so the garbage collector keeps the heap
// near what is live instead of letting it grow to twice that. A GOMEMLIMIT
// in the environment is left in force unless memory_limit is set. It
// returns the limit in force, for the start-up log line.
func setMemoryLimit(cfg config.Config) int64 {
	if cfg.MemoryLimit == 0 && os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := cfg.EffectiveMemoryLimit()
	if limit < 0 {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	return limit
}

func retentionMs(d time.Duration) int64 {
	if d <= 0 {
		return -1
	}
	return d.Milliseconds()
}

// The Kafka listener's server gives the HTTP API its groups
// (SetGroups in serve), checked when building rather than by a type
// assertion that would fail silently.
var _ httpapi.Groups = (*kafka.Server)(nil)
