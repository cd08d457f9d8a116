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

// TestLoadSpecClient: --client is franz-go (the default) or raw, and raw
// refuses what it cannot send (keys, compression).
func TestLoadSpecClient(t *testing.T) {
	for _, c := range []struct {
		client, keyDist, compression string
		ok                           bool
	}{{"", "none", "none", true}, {"franz-go", "uniform", "zstd", true}, {"raw", "none", "none", true},
		{"raw", "uniform", "none", false}, {"raw", "none", "zstd", false}, {"sarama", "none", "none", false}} {
		s := loadSpec{topics: 1, producers: 1, records: 1, replication: -1, client: c.client, keyDist: c.keyDist, compression: c.compression}
		if err := s.validate(); (err == nil) != c.ok {
			t.Errorf("--client %q --key-distribution %s --compression %s: err %v, want ok=%v", c.client, c.keyDist, c.compression, err, c.ok)
		}
	}
}

func TestPayloadPoolValues(t *testing.T) {
	p, err := newPayloadPool()
	if err != nil {
		t.Fatal(err)
	}
	value := func(n int64, size int) []byte {
		v := make([]byte, size)
		p.fill(v, n)
		return v
	}
	a, b := value(1, 100), value(2, 100)
	if string(a) == string(b) {
		t.Fatal("two records got the same value")
	}
	a[0] ^= 0xff // a copy: changing it leaves the pool and the next value alone
	if c := value(1, 100); c[0] == a[0] {
		t.Fatal("value shares memory with the pool")
	}
	if big := value(3, 3<<20); string(big[:1<<20]) != string(big[1<<20:2<<20]) {
		t.Fatal("a value larger than the pool is not the pool repeated")
	}
}
