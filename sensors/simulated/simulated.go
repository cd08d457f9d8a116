// Package simulated is a sensor source that produces synthetic readings (sine, random
// walk, step and counter signals with gaussian noise), so a fresh katka install shows
// data at once and tests have a steady, predictable input.
//
// Each reading is one record: the key is the sensor id and the value is JSON,
//
//	{"sensor":"temp-1","value":21.37,"unit":"C","ts":"2025-01-02T03:04:05.123456789Z"}
package simulated

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// Producer is what the source writes to; the broker satisfies it via a small adapter.
type Producer interface {
	// Produce writes one record to topic; the implementation picks the partition.
	Produce(ctx context.Context, topic string, key, value []byte, ts time.Time) error
}

// Reading is one record of a tick, for a TickProducer.
type Reading struct {
	Key, Value []byte
	TS         time.Time
}

// TickProducer is a Producer that can also write every reading of one tick
// in one call, so that they share record batches (and a topic's compression)
// and one fsync; the broker adapter is one.
type TickProducer interface {
	Producer
	ProduceTick(ctx context.Context, topic string, readings []Reading) error
}

// Source produces one reading per configured sensor every interval.
type Source struct {
	topic    string
	interval time.Duration
	sensors  []*sensor
	p        Producer
	log      *slog.Logger
	now      func() time.Time // the clock; tests replace it

	running atomic.Bool

	// link logs when writes start failing (disk full, quota) and when they
	// work again, once each, with a reminder every 5 minutes in between.
	link *linkstate.Link
}

// reading is the JSON value of one record.
type reading struct {
	Sensor string    `json:"sensor"`
	Value  float64   `json:"value"`
	Unit   string    `json:"unit"`
	TS     time.Time `json:"ts"` // RFC 3339 with nanoseconds, UTC
}

// New checks cfg and returns a source writing to p. cfg.Enabled and cfg.Partitions are
// not used here: whether to run and how to create the topic are the caller's choices.
// A nil log discards log output.
func New(cfg Config, p Producer, log *slog.Logger) (*Source, error) {
	if p == nil {
		return nil, errors.New("simulated: producer is nil")
	}
	if err := config.ValidTopicName(cfg.Topic); err != nil {
		return nil, fmt.Errorf("simulated: %w", err)
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("simulated: interval %s must be positive", cfg.Interval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		topic:    cfg.Topic,
		interval: cfg.Interval,
		p:        p,
		log:      log.With("source", "simulated", "topic", cfg.Topic),
		now:      time.Now,
	}
	s.link = s.newLink(nil)
	seen := make(map[string]bool, len(cfg.Sensors))
	for i, c := range cfg.Sensors {
		sn, err := newSensor(c)
		if err != nil {
			return nil, fmt.Errorf("simulated: sensors[%d] %q: %w", i, c.ID, err)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("simulated: sensors[%d]: id %q is used twice", i, c.ID)
		}
		seen[c.ID] = true
		s.sensors = append(s.sensors, sn)
	}
	return s, nil
}

// Run produces one reading per sensor at once and then every interval, until ctx is
// done; it then returns nil. A failed produce is logged (at most once per 10s, with the
// number of failures not logged) and the loop goes on. Run returns an error only if the
// source is already running.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("simulated: source is already running")
	}
	defer s.running.Store(false)

	s.log.Info("simulated sensors started", "sensors", len(s.sensors), "interval", s.interval)
	defer s.log.Info("simulated sensors stopped")

	start := s.now()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		s.emit(ctx, start)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// emit produces one reading of every sensor: in one call when the producer
// is a TickProducer, else one call per reading.
func (s *Source) emit(ctx context.Context, start time.Time) {
	tp, tick := s.p.(TickProducer)
	var readings []Reading
	for _, sn := range s.sensors {
		ts := s.now()
		value, err := json.Marshal(reading{
			Sensor: sn.id,
			Value:  sn.read(ts.Sub(start)),
			Unit:   sn.unit,
			TS:     ts.UTC(),
		})
		if err != nil { // cannot happen: values are finite and clamped
			s.produceFailed(sn.id, fmt.Errorf("encode reading: %w", err))
			continue
		}
		if tick {
			readings = append(readings, Reading{Key: []byte(sn.id), Value: value, TS: ts})
			continue
		}
		if err := s.p.Produce(ctx, s.topic, []byte(sn.id), value, ts); err != nil {
			if ctx.Err() != nil {
				return // shutting down
			}
			s.produceFailed(sn.id, err)
			continue
		}
		s.link.Up()
	}
	if tick && len(readings) > 0 {
		err := tp.ProduceTick(ctx, s.topic, readings)
		switch {
		case err == nil:
			s.link.Up()
		case ctx.Err() == nil:
			s.produceFailed(fmt.Sprintf("%d sensors", len(readings)), err)
		}
	}
}

// newLink is the state of the source's writes to its topic
// (simulated/<topic>), kept in links (which may be nil).
func (s *Source) newLink(links *linkstate.Registry) *linkstate.Link {
	return links.New(linkstate.Options{Name: "simulated/" + s.topic, Log: s.log, RetryMin: s.interval, RetryMax: s.interval,
		Now: func() time.Time { return s.now() }})
}

// produceFailed records a failed produce: logged when writes start failing,
// then at most once per linkstate.DefaultRemind.
func (s *Source) produceFailed(id string, err error) {
	s.link.Down(fmt.Errorf("produce reading of %s: %w", id, err))
}
