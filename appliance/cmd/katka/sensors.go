package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
	_ "github.com/katka-io/katka/sensors/all" // every input registers itself
)

// startSensors starts every enabled input; they stop when ctx ends and wg
// tracks them so shutdown waits for their last writes. The inputs' Prometheus
// collectors are sensors.Collectors().
func startSensors(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Sensors, log *slog.Logger) error {
	return sensors.Start(ctx, wg, cfg, sensors.Env{Broker: b, Log: log})
}
