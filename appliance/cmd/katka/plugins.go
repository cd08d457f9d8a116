package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/plugins/host"
)

// pluginsStatus returns every plugin instance's state once startPlugins ran
// with instances configured (nil otherwise); served at GET /v1/status/plugins.
var pluginsStatus func() []host.Status

// pluginHost is the running plugin host once startPlugins ran; the sensors
// use its partitioner instances.
var pluginHost *host.Host

// startPlugins discovers, verifies and supervises the configured plugins; they
// stop when ctx ends and wg tracks them. A plugin that is misconfigured (no
// such plugin, wrong kind for its inputs) stops katka at start with the field
// named; a plugin that fails at run time is restarted and never stops katka.
func startPlugins(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, links *linkstate.Registry, log *slog.Logger) error {
	h, err := host.New(b, host.Options{
		Config:            cfg.Plugins,
		DefaultPartitions: cfg.Topics.DefaultPartitions,
		Registerer:        reg,
		Log:               log.With("component", "plugins"),
		Links:             links,
		Singletons:        singletonRunner(), // in a cell each instance runs on one node
	})
	if err != nil {
		return fmt.Errorf("plugins: %w", err)
	}
	if err := h.Start(ctx, wg); err != nil {
		return fmt.Errorf("plugins: %w", err)
	}
	pluginHost = h
	if len(cfg.Plugins.Instances) > 0 {
		pluginsStatus = h.Status
	}
	return nil
}
