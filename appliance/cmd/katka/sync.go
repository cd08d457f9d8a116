package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sync/mirror"
)

// syncStatus returns the live sync status once startSync ran with sync enabled
// (nil otherwise): the hook for an HTTP endpoint such as GET /v1/sync/status.
var syncStatus func() mirror.Status

// startSync starts the uplink and downlink to the central Kafka cluster when
// sync is enabled; they stop when ctx ends and wg tracks them. Their status is
// written to the sync status file every second (`katka sync status`).
func startSync(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, links *linkstate.Registry, log *slog.Logger) error {
	if !cfg.Sync.Enabled {
		return nil
	}
	svc, err := mirror.New(b, cfg.Sync, mirror.StatusPath(cfg.DataDir, cfg.Sync.StatusFile), reg, links, log)
	if err != nil {
		return err
	}
	syncStatus = svc.Status
	wg.Go(func() { svc.Run(ctx) })
	log.Info("sync started", "site", cfg.Sync.Site, "brokers", cfg.Sync.Brokers, "uplink", len(cfg.Sync.Uplink), "downlink", len(cfg.Sync.Downlink))
	return nil
}
