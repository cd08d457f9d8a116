package main

import (
	"context"
	"io"
	"log/slog"
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/group"
	"github.com/katka-io/katka/appliance/kafka"
)

func init() {
	startKafka = func(ctx context.Context, b *broker.Broker, full config.Config, reg prometheus.Registerer, log *slog.Logger, authz *auth.Authorizer) (io.Closer, error) {
		cfg := full.Kafka
		l := cfg.Limits
		sec, err := kafkaSecurity(full, log)
		if err != nil {
			return nil, err
		}
		srv, err := kafka.Listen(b, kafka.Config{
			Addr: cfg.Addr, AdvertisedAddr: cfg.AdvertisedAddr, Registerer: reg, Logger: log,
			Listeners: sec.listeners, Users: sec.users, SuperUsers: sec.superUsers,
			State:                  kafkaStateConfig(full),
			Authorizer:             authz,
			Cell:                   kafkaCellView(),
			MaxConnections:         l.MaxConnections,
			MaxConnectionsPerIP:    l.MaxConnectionsPerIP,
			MaxRequestBytes:        int(l.MaxRequestBytes),
			QueuedMaxRequestBytes:  int64(l.QueuedMaxRequestBytes),
			FetchMaxBytes:          int32(min(l.FetchMaxBytes, math.MaxInt32)),
			FetchPartitionMaxBytes: int32(min(l.FetchPartitionMaxBytes, math.MaxInt32)),
		})
		if err != nil {
			return nil, err
		}
		if runningCell != nil { // the other nodes' calls for transactions (kafka/txn_cell.go)
			runningCell.SetPeerCallHandler(srv.HandlePeerCall)
		}
		return srv, nil
	}
}

// kafkaStateConfig maps groups.* and kafka.limits' producer id keys to the
// Kafka server's group coordinator and producer table.
func kafkaStateConfig(cfg config.Config) kafka.StateConfig {
	delay := cfg.Groups.InitialRebalanceDelay
	if delay == 0 {
		delay = -1 // 0 in the config is no delay; in group.Config it is Kafka's 3 s
	}
	return kafka.StateConfig{
		Groups: group.Config{
			InitialRebalanceDelay: delay,
			OffsetsRetention:      cfg.Groups.OffsetsRetention,
			MaxGroups:             cfg.Groups.MaxGroups,
			MaxMembers:            cfg.Groups.MaxMembers,
		},
		ProducerIDExpiration: cfg.Kafka.Limits.ProducerIDExpiration,
		MaxProducerIDs:       cfg.Kafka.Limits.MaxProducerIDs,
	}
}
