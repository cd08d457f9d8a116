package kafka

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// kcatPath finds kcat (librdkafka); without it the test is skipped, unless
// CI=true, where a missing tool is a failure.
func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (apt-get install -y kcat) and CI=true")
		}
		t.Skip("kcat not installed (apt-get install -y kcat)")
	}
	return p
}

func runKcat(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatPath(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// TestKcatRoundTrip: librdkafka produces 10,000 keyed records with headers
// (murmur2 partitioner, as a Java client would pick) and reads them back exactly.
func TestKcatRoundTrip(t *testing.T) {
	kcatPath(t)
	e := newEnv(t)
	for _, codec := range []string{"none", "snappy", "gzip", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "kcat-" + codec
			const parts = 4
			if _, err := e.b.CreateTopic(topic, parts, broker.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			n := 10000
			if codec != "none" {
				n = 2000
			}
			var in bytes.Buffer
			for i := 0; i < n; i++ {
				fmt.Fprintf(&in, "key-%d|value %d %s\n", i, i, strings.Repeat("x", i%50))
			}
			runKcat(t, in.Bytes(), "-P", "-b", e.addr, "-t", topic, "-K", "|", "-H", "source=kcat", "-H", "codec="+codec,
				"-X", "compression.codec="+codec, "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true")
			out := runKcat(t, nil, "-C", "-b", e.addr, "-t", topic, "-o", "beginning", "-e", "-q",
				"-f", "%p\t%k\t%s\t%h\n")
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != n {
				t.Fatalf("consumed %d records, want %d", len(lines), n)
			}
			seen := map[string]bool{}
			for _, l := range lines {
				f := strings.Split(l, "\t")
				if len(f) != 4 {
					t.Fatalf("bad line %q", l)
				}
				var i int
				fmt.Sscanf(f[1], "key-%d", &i)
				if want := fmt.Sprintf("value %d %s", i, strings.Repeat("x", i%50)); f[2] != want {
					t.Fatalf("key %s: value %q, want %q", f[1], f[2], want)
				}
				if f[3] != "source=kcat,codec="+codec {
					t.Fatalf("headers %q", f[3])
				}
				if want := broker.HashPartition([]byte(f[1]), parts); f[0] != fmt.Sprint(want) {
					t.Fatalf("key %s on partition %s, murmur2 says %d", f[1], f[0], want)
				}
				if seen[f[1]] {
					t.Fatalf("key %s twice", f[1])
				}
				seen[f[1]] = true
			}
		})
	}
}

func TestKcatMetadataAndOffsets(t *testing.T) {
	kcatPath(t)
	e := newEnv(t)
	if _, err := e.b.CreateTopic("meta", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	out := string(runKcat(t, nil, "-L", "-b", e.addr))
	if !strings.Contains(out, `topic "meta" with 3 partitions`) || !strings.Contains(out, "broker 0 at 127.0.0.1:") {
		t.Fatalf("kcat -L:\n%s", out)
	}
	runKcat(t, []byte("a\nb\nc\nd\n"), "-P", "-b", e.addr, "-t", "meta", "-p", "1")
	// From the end: nothing; from offset 2: c, d; the last 1: d.
	if out := runKcat(t, nil, "-C", "-b", e.addr, "-t", "meta", "-p", "1", "-o", "end", "-e", "-q"); len(out) != 0 {
		t.Fatalf("-o end: %q", out)
	}
	if out := runKcat(t, nil, "-C", "-b", e.addr, "-t", "meta", "-p", "1", "-o", "2", "-e", "-q"); string(out) != "c\nd\n" {
		t.Fatalf("-o 2: %q", out)
	}
	if out := runKcat(t, nil, "-C", "-b", e.addr, "-t", "meta", "-p", "1", "-o", "-1", "-e", "-q"); string(out) != "d\n" {
		t.Fatalf("-o -1: %q", out)
	}
	// Auto-create on produce to a new topic.
	runKcat(t, []byte("x\n"), "-P", "-b", e.addr, "-t", "kcat-auto")
	if out := runKcat(t, nil, "-C", "-b", e.addr, "-t", "kcat-auto", "-o", "beginning", "-e", "-q"); string(out) != "x\n" {
		t.Fatalf("auto-created topic: %q", out)
	}
}
