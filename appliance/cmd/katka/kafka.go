package main

import (
	"context"
	"io"
	"log/slog"
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/kafka"
)

func init() {
	startKafka = func(ctx context.Context, b *broker.Broker, cfg config.Kafka, reg prometheus.Registerer, log *slog.Logger) (io.Closer, error) {
		l := cfg.Limits
		return kafka.Listen(b, kafka.Config{
			Addr: cfg.Addr, AdvertisedAddr: cfg.AdvertisedAddr, Registerer: reg, Logger: log,
			MaxConnections:         l.MaxConnections,
			MaxConnectionsPerIP:    l.MaxConnectionsPerIP,
			MaxRequestBytes:        int(l.MaxRequestBytes),
			QueuedMaxRequestBytes:  int64(l.QueuedMaxRequestBytes),
			FetchMaxBytes:          int32(min(l.FetchMaxBytes, math.MaxInt32)),
			FetchPartitionMaxBytes: int32(min(l.FetchPartitionMaxBytes, math.MaxInt32)),
		})
	}
}
