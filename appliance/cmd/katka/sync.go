package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/cluster"
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
	if runningCell != nil {
		svc.SetRemote(runningCell) // partitions without a replica on the uplink's node are read from their leaders
	}
	wg.Go(func() { runSingleton(ctx, singletonRunner(), "sync/"+cfg.Sync.Site, svc.Run) })
	log.Info("sync started", "site", cfg.Sync.Site, "brokers", cfg.Sync.Brokers, "uplink", len(cfg.Sync.Uplink), "downlink", len(cfg.Sync.Downlink))
	return nil
}

// serviceRunner runs a singleton service of the cell: fn runs while this
// node owns the service and its context is cancelled when the node loses it
// (cluster.Node.RunService; appliance/cluster/services.go).
type serviceRunner interface {
	RunService(ctx context.Context, name string, fn func(ctx context.Context, epoch int64))
}

// singletonRunner is the running cell's service runner, nil outside a cell.
func singletonRunner() serviceRunner {
	if runningCell == nil {
		return nil
	}
	return runningCell
}

// runSingleton runs fn until ctx ends: at once without a cell (r nil), else
// on whichever node of the cell owns the service name, moving with it.
func runSingleton(ctx context.Context, r serviceRunner, name string, fn func(ctx context.Context)) {
	if r == nil {
		fn(ctx)
		return
	}
	r.RunService(ctx, name, func(ctx context.Context, _ int64) { fn(ctx) })
}

// printServices lists the owners of the cell's singleton services (`katka
// cell status`): one line per service, by name.
func printServices(w io.Writer, svcs map[string]cluster.ServiceOwner) {
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		o := svcs[name]
		if o.Node < 0 {
			fmt.Fprintf(w, "service %s: no owner (released; the next node that runs it claims it)\n", name)
			continue
		}
		fmt.Fprintf(w, "service %s on node %d (owner epoch %d)\n", name, o.Node, o.Epoch)
	}
}
