package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/firmware"
)

// Subscribe returns a channel that receives a value (coalesced) whenever the
// set of available artefacts may have changed: for in-process consumers such
// as katka's self-update.
func (s *Store) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	s.subs = append(s.subs, ch)
	s.subMu.Unlock()
	ch <- struct{}{}
	return ch
}

// notifySubs wakes every subscriber (s.mu may be held).
func (s *Store) notifySubs() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Available returns the manifests of the available, unexpired artefacts,
// ordered by name and version.
func (s *Store) Available() []firmware.Manifest { return s.available() }

// Open opens the verified file of an available artefact.
func (s *Store) Open(name, version string) (*os.File, firmware.Manifest, error) {
	s.mu.Lock()
	a, ok := s.arts[name+"/"+version]
	if !ok || a.state != StateAvailable {
		s.mu.Unlock()
		return nil, firmware.Manifest{}, fmt.Errorf("firmware %s %s is not available", name, version)
	}
	a.lastUsed = s.now().UTC()
	m := a.m
	s.mu.Unlock()
	f, err := os.Open(filepath.Join(s.artDir(name, version), "data"))
	return f, m, err
}

// Report writes katka's own feedback (e.g. a self-update result) to the
// status topic, keyed by f.Device, with source "self".
func (s *Store) Report(ctx context.Context, f Feedback) error {
	if err := f.check(); err != nil {
		return err
	}
	f.Time, f.Source = s.now().UTC().Truncate(time.Millisecond), "self"
	val, _ := json.Marshal(f)
	if _, err := s.o.Broker.Produce(ctx, s.o.Config.StatusTopic, 0, []broker.Record{{Key: []byte(f.Device), Value: val, Timestamp: f.Time}}, broker.AcksAll); err != nil {
		return fmt.Errorf("write feedback: %w", err)
	}
	s.m.feedback.WithLabelValues("self", "ok").Inc()
	return nil
}
