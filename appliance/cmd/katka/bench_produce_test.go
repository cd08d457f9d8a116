package main

import "testing"

// TestLoadSpecReplicationFactor: --replication-factor takes -1 (the
// cluster's default) or a positive count, nothing else.
func TestLoadSpecReplicationFactor(t *testing.T) {
	for _, c := range []struct {
		rf int16
		ok bool
	}{{-1, true}, {1, true}, {3, true}, {0, false}, {-2, false}} {
		s := loadSpec{topics: 1, producers: 1, records: 1, keyDist: "none", replication: c.rf}
		if err := s.validate(); (err == nil) != c.ok {
			t.Errorf("--replication-factor %d: err %v, want ok=%v", c.rf, err, c.ok)
		}
	}
}
