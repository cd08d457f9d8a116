package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestBenchProduceKafkaDefaultMessageMaxBytes runs `katka bench produce`
// against a katka whose topic has Kafka's default message.max.bytes
// (1,000,012 bytes, below the 1 MiB batches the bench used to hard-code):
// the bench reads the limit from the broker (DescribeConfigs), keeps its
// batches to it, and every record is acknowledged. 50,000 records of 1,000 B
// are enough to fill batches to the limit.
func TestBenchProduceKafkaDefaultMessageMaxBytes(t *testing.T) {
	bin := requireBinary(t)
	k := newGroupKatka(t, t.TempDir())
	k.start()
	adm := kadm.NewClient(k.client(t))
	const limit = "1000012"
	if r, err := adm.CreateTopic(ctxFor(t, 10*time.Second), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr(limit)}, "bench"); err != nil || r.Err != nil {
		t.Fatalf("create topic: %v %+v", err, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "produce", "--brokers", k.Kafka, "--topic", "bench",
		"--records", "50000", "--record-size", "1000", "--json", "--quiet")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("katka bench produce: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	var res struct {
		BatchMaxBytes int64  `json:"batch_max_bytes"`
		Sent          int64  `json:"records_sent"`
		Failed        int64  `json:"records_failed"`
		Error         string `json:"error"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, out.String())
	}
	if res.BatchMaxBytes != 1000012 || res.Sent != 50000 || res.Failed != 0 || res.Error != "" {
		t.Fatalf("bench produce: %+v, want 50000 records sent in batches of at most 1000012 bytes", res)
	}
	ends, err := adm.ListEndOffsets(ctxFor(t, 10*time.Second), "bench")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("bench", 0); o.Offset != 50000 {
		t.Fatalf("end offset %d after the bench, want 50000", o.Offset)
	}
}

// TestBenchProduceRawClient runs `katka bench produce --client raw` (one
// hand-built connection per producer, each writing one partition) at a fixed
// rate with a group reading along: every record is acknowledged and read,
// each partition gets its connections' share, and the JSON names the client.
func TestBenchProduceRawClient(t *testing.T) {
	bin := requireBinary(t)
	k := newGroupKatka(t, t.TempDir())
	k.start()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "produce", "--brokers", k.Kafka, "--topic", "raw", "--partitions", "4",
		"--producers", "8", "--client", "raw", "--rate", "4000", "--duration", "1s", "--groups", "1", "--json", "--quiet")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("katka bench produce --client raw: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	var res struct {
		Client   string `json:"client"`
		Sent     int64  `json:"records_sent"`
		Failed   int64  `json:"records_failed"`
		Consumed int64  `json:"records_consumed"`
		Error    string `json:"error"`
		E2E      *struct {
			Count int64 `json:"count"`
		} `json:"end_to_end_latency"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, out.String())
	}
	if res.Client != "raw" || res.Sent != 4000 || res.Failed != 0 || res.Error != "" || res.Consumed != 4000 || res.E2E == nil || res.E2E.Count != 4000 {
		t.Fatalf("bench produce --client raw: %+v, want 4000 records sent and consumed", res)
	}
	ends, err := kadm.NewClient(k.client(t)).ListEndOffsets(ctxFor(t, 10*time.Second), "raw")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 4; p++ {
		if o, _ := ends.Lookup("raw", p); o.Offset != 1000 {
			t.Errorf("partition %d ends at %d, want 1000 (two connections of 500 records each)", p, o.Offset)
		}
	}
}

// TestBenchProduceWarmup: with --warmup the records sent during the warm-up
// are produced and read like the others but left out of the latency figures,
// which count only the records sent after it.
func TestBenchProduceWarmup(t *testing.T) {
	bin := requireBinary(t)
	k := newGroupKatka(t, t.TempDir())
	k.start()
	for _, client := range []string{"franz-go", "raw"} {
		t.Run(client, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "bench", "produce", "--brokers", k.Kafka, "--topic", "warm-"+client, "--client", client,
				"--rate", "2000", "--duration", "1s", "--warmup", "1s", "--groups", "1", "--json", "--quiet")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("katka bench produce --warmup: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
			}
			type lat struct {
				Count int64 `json:"count"`
			}
			var res struct {
				Warmup   float64 `json:"warmup_seconds"`
				Sent     int64   `json:"records_sent"`
				Consumed int64   `json:"records_consumed"`
				Error    string  `json:"error"`
				Produce  lat     `json:"produce_latency"`
				E2E      *lat    `json:"end_to_end_latency"`
			}
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("bench output is not JSON: %v\n%s", err, out.String())
			}
			if res.Warmup != 1 || res.Sent != 4000 || res.Consumed != 4000 || res.Error != "" || res.E2E == nil {
				t.Fatalf("bench produce --warmup 1s: %+v, want 4000 records (1 s of warm-up and 1 s measured at 2000/s) sent and read", res)
			}
			// Paced sends may run a millisecond ahead of schedule: about 2,000
			// records fall after the warm-up.
			for name, n := range map[string]int64{"produce": res.Produce.Count, "end-to-end": res.E2E.Count} {
				if n < 1900 || n > 2100 {
					t.Errorf("%s latency counts %d records, want the ~2000 sent after the warm-up", name, n)
				}
			}
		})
	}
}
