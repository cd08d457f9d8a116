package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// startSync starts the uplink and downlink links to a central Kafka cluster, if
// configured; they stop when ctx ends and wg tracks them. None yet.
func startSync(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, log *slog.Logger) error {
	return nil
}
