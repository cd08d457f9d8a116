package broker

import "testing"

// Values computed by the Kafka Java client (Utils.murmur2 / Utils.toPositive),
// as published in Kafka's and franz-go's partitioner tests.
func TestHashPartitionMatchesJavaClient(t *testing.T) {
	cases := []struct {
		key  string
		hash int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, c := range cases {
		if got := murmur2([]byte(c.key)); got != c.hash {
			t.Errorf("murmur2(%q) = %d, want %d", c.key, got, c.hash)
		}
	}
	if p := HashPartition([]byte("foobar"), 10); p != (-790332482&0x7fffffff)%10 {
		t.Errorf("partition %d", p)
	}
}
