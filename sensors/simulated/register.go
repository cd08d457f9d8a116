package simulated

import (
	"context"
	"fmt"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

func init() { sensors.Add("simulated", factory) }

// factory builds the simulated source when it is enabled and ensures its topic.
func factory(cfg config.Sensors, env sensors.Env) ([]sensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	if _, err := env.Broker.EnsureTopic(c.Topic, c.Partitions); err != nil {
		return nil, fmt.Errorf("topic %s: %w", c.Topic, err)
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	src, err := New(*c, writerProducer{w: w, partitions: c.Partitions}, env.Log.With("sensor", "simulated"))
	if err != nil {
		return nil, err
	}
	src.link = src.newLink(env.Links)
	return []sensors.Input{src}, nil
}

// writerProducer adapts a sensors.Writer to Producer.
type writerProducer struct {
	w          *sensors.Writer
	partitions int32
}

// Produce writes one record and returns once it is durable.
func (p writerProducer) Produce(ctx context.Context, topic string, key, value []byte, ts time.Time) error {
	return p.w.Write(ctx, topic, p.partitions, []broker.Record{{Key: key, Value: value, Timestamp: ts}})
}

// ProduceTick writes one tick's readings in one Write: each partition's share
// is one record batch and the partitions share an fsync.
func (p writerProducer) ProduceTick(ctx context.Context, topic string, readings []Reading) error {
	recs := make([]broker.Record, len(readings))
	for i, r := range readings {
		recs[i] = broker.Record{Key: r.Key, Value: r.Value, Timestamp: r.TS}
	}
	return p.w.Write(ctx, topic, p.partitions, recs)
}
