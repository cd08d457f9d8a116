package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kadm"
)

// factoryTelemetry returns n JSON readings like a factory line's, one per
// line, the same on every run (seeded): about 128 bytes each, so 100,000 make
// the 12.8 MB file of issue 13.
func factoryTelemetry(n int) []byte {
	rng := rand.New(rand.NewPCG(13, 13))
	var out bytes.Buffer
	ts := int64(1_767_225_600_000)
	states := []string{"running", "running", "running", "idle", "setup", "alarm"}
	for range n {
		ts += int64(5 + rng.IntN(10))
		fmt.Fprintf(&out, `{"ts":%d,"plant":"bremen","line":%d,"machine":"press-%02d","temp_c":%.2f,"p_bar":%.3f,"rpm":%d,"state":"%s"}`+"\n",
			ts, 1+rng.IntN(4), 1+rng.IntN(12), 55+rng.Float64()*30, 180+rng.Float64()*20, 1400+rng.IntN(200), states[rng.IntN(len(states))])
	}
	return out.Bytes()
}

// dirSize is the total size of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKcatZstdTelemetryOnDisk is issue 13's first Done-when: 100,000 JSON
// telemetry records (12.8 MB) produced by kcat with -z zstd in batches of
// 10,000 occupy at most twice their `zstd -3` size in the partition
// directory (katka stores the producer's compressed batches), and kcat
// reads every record back unchanged. The figures go to storage/README.md.
func TestKcatZstdTelemetryOnDisk(t *testing.T) {
	kcat := kcatPath(t)
	data := factoryTelemetry(100_000)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(3)))
	if err != nil {
		t.Fatal(err)
	}
	z3 := len(enc.EncodeAll(data, nil))

	k := newGroupKatka(t, t.TempDir())
	k.start()
	const topic = "telemetry"
	adm := kadm.NewClient(k.client(t))
	// A 10,000-record batch decompresses to about 1.3 MB: max.message.bytes
	// bounds what a batch may decompress to, so the topic allows 4 MiB.
	if r, err := adm.CreateTopic(ctxFor(t, 10*time.Second), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("4194304")}, topic); err != nil || r.Err != nil {
		t.Fatalf("create: %v %+v", err, r)
	}
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.Bytes()
	}
	run(data, "-P", "-b", k.Kafka, "-t", topic, "-p", "0", "-z", "zstd",
		"-X", "batch.num.messages=10000", "-X", "batch.size=4000000", "-X", "linger.ms=2000")
	onDisk := dirSize(t, filepath.Join(k.dataDir, topic, "0"))
	t.Logf("telemetry: %d bytes raw, %d bytes zstd -3, %d bytes in the partition directory (%.2fx zstd -3, %.1f%% of raw)",
		len(data), z3, onDisk, float64(onDisk)/float64(z3), 100*float64(onDisk)/float64(len(data)))
	if onDisk > 2*int64(z3) {
		t.Fatalf("%d bytes on disk, want at most 2x zstd -3 (%d)", onDisk, 2*z3)
	}
	out := run(nil, "-C", "-b", k.Kafka, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n")
	if !bytes.Equal(out, data) {
		t.Fatalf("kcat read back %d bytes (%d lines), want the %d bytes produced", len(out), bytes.Count(out, []byte("\n")), len(data))
	}
}
