package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
	_ "github.com/katka-io/katka/sensors/all" // every input registers itself
)

// startSensors starts every enabled input; they stop when ctx ends and wg
// tracks them so shutdown waits for their last writes. The inputs' Prometheus
// collectors are sensors.Collectors(). A sensors.partitioner naming a
// partitioner plugin instance uses the plugin host started before.
func startSensors(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Sensors, links *linkstate.Registry, log *slog.Logger) error {
	env := sensors.Env{Broker: b, Log: log, Links: links}
	if h := pluginHost; h != nil {
		env.Partitioner = func(name string) (sensors.PartitionFunc, bool, error) {
			fn, ok, err := h.Partitioner(name)
			return fn, ok, err
		}
	}
	return sensors.Start(ctx, wg, cfg, env)
}
