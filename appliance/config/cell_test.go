package config

import (
	"strings"
	"testing"
	"time"
)

// TestCellVoterReplaceAfter: cell.voter_replace_after defaults to 5m and must
// be longer than cell.peer_ttl and at most 24h.
func TestCellVoterReplaceAfter(t *testing.T) {
	cell := func(d time.Duration) *Config {
		c := Default()
		c.Cell.Name, c.Cell.CredentialDir, c.Cell.PeerAddr = "plant7", "/etc/katka/cell", "127.0.0.1:9093"
		if d != 0 {
			c.Cell.VoterReplaceAfter = d
		}
		return &c
	}
	if d := Default().Cell.VoterReplaceAfter; d != 5*time.Minute {
		t.Errorf("default voter_replace_after %s, want 5m", d)
	}
	if err := cell(0).Validate(); err != nil {
		t.Fatalf("default cell: %v", err)
	}
	for _, d := range []time.Duration{30 * time.Second, time.Second, 25 * time.Hour} {
		err := cell(d).Validate()
		want := "cell.voter_replace_after: " + d.String() + " is out of range (allowed: longer than cell.peer_ttl (30s), at most 24h)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("voter_replace_after %s: %v, want %q", d, err, want)
		}
	}
	if err := cell(31 * time.Second).Validate(); err != nil {
		t.Errorf("31s: %v", err)
	}
}

// TestCellLiveness: cell.heartbeat_interval (10ms..10s, default 500ms) and
// cell.session_timeout (more than twice the interval, at most 1m, default 3s).
func TestCellLiveness(t *testing.T) {
	cell := func(hb, st time.Duration) error {
		c := Default()
		c.Cell.Name, c.Cell.CredentialDir, c.Cell.PeerAddr = "plant7", "/etc/katka/cell", "127.0.0.1:9093"
		c.Cell.HeartbeatInterval, c.Cell.SessionTimeout = hb, st
		return c.Validate()
	}
	if d := Default().Cell; d.HeartbeatInterval != 500*time.Millisecond || d.SessionTimeout != 3*time.Second {
		t.Errorf("defaults heartbeat_interval %s session_timeout %s, want 500ms and 3s", d.HeartbeatInterval, d.SessionTimeout)
	}
	for _, ok := range [][2]time.Duration{{10 * time.Millisecond, 21 * time.Millisecond}, {10 * time.Second, time.Minute}, {time.Second, 2001 * time.Millisecond}} {
		if err := cell(ok[0], ok[1]); err != nil {
			t.Errorf("heartbeat_interval %s session_timeout %s: %v", ok[0], ok[1], err)
		}
	}
	for _, c := range []struct {
		hb, st time.Duration
		want   string
	}{
		{9 * time.Millisecond, time.Second, "cell.heartbeat_interval: 9ms is out of range (allowed: 10ms..10s)"},
		{11 * time.Second, time.Minute, "cell.heartbeat_interval: 11s is out of range (allowed: 10ms..10s)"},
		{time.Second, 2 * time.Second, "cell.session_timeout: 2s is out of range (allowed: longer than twice cell.heartbeat_interval (1s), at most 1m0s)"},
		{time.Second, 61 * time.Second, "cell.session_timeout: 1m1s is out of range (allowed: longer than twice cell.heartbeat_interval (1s), at most 1m0s)"},
	} {
		if err := cell(c.hb, c.st); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("heartbeat_interval %s session_timeout %s: %v, want %q", c.hb, c.st, err, c.want)
		}
	}
}
