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
