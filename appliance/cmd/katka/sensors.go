package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors/simulated"
)

// startSensors starts every enabled input; they stop when ctx ends and wg
// tracks them so shutdown waits for their last writes.
func startSensors(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Sensors, log *slog.Logger) error {
	if cfg.Simulated.Enabled {
		if err := startSimulated(ctx, wg, b, cfg.Simulated, log); err != nil {
			return err
		}
	}
	return nil
}

// brokerProducer adapts the broker to what sensors write to: the partition is
// the key's hash, as a Kafka Java client would choose.
type brokerProducer struct{ b *broker.Broker }

func (p brokerProducer) Produce(ctx context.Context, topic string, key, value []byte, ts time.Time) error {
	info, err := p.b.Topic(topic)
	if err != nil {
		return err
	}
	_, err = p.b.Produce(ctx, topic, broker.HashPartition(key, info.Partitions), []broker.Record{{Key: key, Value: value, Timestamp: ts}}, broker.AcksAll)
	return err
}

// startSimulated runs the simulated sensor source until ctx ends.
func startSimulated(ctx context.Context, wg *sync.WaitGroup, b *broker.Broker, cfg config.Simulated, log *slog.Logger) error {
	if _, err := b.EnsureTopic(cfg.Topic, cfg.Partitions); err != nil {
		return fmt.Errorf("simulated sensors: %w", err)
	}
	src, err := simulated.New(cfg, brokerProducer{b}, log.With("sensor", "simulated"))
	if err != nil {
		return fmt.Errorf("simulated sensors: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := src.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("simulated sensors stopped", "err", err)
		}
	}()
	return nil
}
