package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// startPlugins discovers, verifies and supervises the configured plugins; they
// stop when ctx ends and wg tracks them. None yet.
func startPlugins(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, log *slog.Logger) error {
	return nil
}
