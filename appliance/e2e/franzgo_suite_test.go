package e2e

// franz-go's own kgo integration suite (the version in go.mod, built from the
// module cache) against a real `katka serve`: the transaction, compression and
// KIP-848 tests the issue names. The suite is a separate `go test` process;
// KGO_SEEDS points it at katka, KGO_TEST_RF=1 makes it create topics katka
// can hold (one replica).

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// franzGoSuiteConfig is katka's config for franz-go's suite: TestTxnEtl opens
// several hundred connections from 127.0.0.1 (consumers, producers, the
// admin client, one per broker and purpose), more than the default
// max_connections_per_ip of 200, and the groups need no initial delay.
const franzGoSuiteConfig = testConfig + `kafka:
  limits:
    max_connections_per_ip: 5000
groups:
  initial_rebalance_delay: 0s
`

// franzGoSuiteTests are the tests of franz-go's pkg/kgo run against katka;
// each must report PASS (a skip fails this test).
var franzGoSuiteTests = []string{
	"TestConsumeMaxDecompressBatchBytes",
	"TestPooling",
	"TestGroupSimple", "TestGroupSimple/classic", "TestGroupSimple/848",
	"TestTxnEtl",
	"TestTxnEtl/range", "TestTxnEtl/cooperative-sticky", "TestTxnEtl/range/848", "TestTxnEtl/sticky/848",
	"TestTxnEtl/cooperative-sticky/static", "TestTxnEtl/sticky/848/static",
}

// TestFranzGoSuite runs franz-go's kgo integration tests TestTxnEtl (all six
// variants: classic range and cooperative-sticky, KIP-848 range and sticky,
// static members of both protocols: a transactional ETL from one topic to
// another, exactly once, through rebalances), TestConsumeMaxDecompressBatchBytes
// (a gzip batch of 3 MiB stored compressed and fetched as stored),
// TestPooling and TestGroupSimple (classic and KIP-848) as a subprocess
// against katka. TestTxnEtl moves KGO_TEST_RECORDS records (5,000 here;
// franz-go's default 500,000 with KATKA_LONG=1).
func TestFranzGoSuite(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found to run franz-go's suite: %v", err)
	}
	records, timeout := "5000", 4*time.Minute
	if os.Getenv("KATKA_LONG") == "1" {
		records, timeout = "500000", 15*time.Minute
	}
	k := startKafkaKatkaWith(t, franzGoSuiteConfig)
	passed, elapsed := runFranzGoSuite(t, goTool, []string{k.KafkaAddr}, 1, records, timeout,
		[]string{"TestTxnEtl", "TestConsumeMaxDecompressBatchBytes", "TestPooling", "TestGroupSimple"}, franzGoSuiteTests)
	t.Logf("franz-go v1.22.2 suite passed against katka in %v (TestTxnEtl %v with %s records)",
		elapsed.Round(time.Millisecond), passed["TestTxnEtl"], records)
}

// runFranzGoSuite runs franz-go's pkg/kgo tests named in top (exact top-level
// names) as a `go test` subprocess with KGO_SEEDS=seeds and KGO_TEST_RF=rf,
// and fails t unless the run succeeds and every name in want reports PASS. It
// returns each passed test's duration and the run's wall time.
func runFranzGoSuite(t *testing.T, goTool string, seeds []string, rf int, records string, timeout time.Duration, top, want []string) (map[string]time.Duration, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run := "^(" + strings.Join(top, "|") + ")$"
	cmd := exec.CommandContext(ctx, goTool, "test", "-count=1", "-v", "-timeout", timeout.String(),
		"-run", run, "github.com/twmb/franz-go/pkg/kgo")
	cmd.Env = append(os.Environ(), "KGO_SEEDS="+strings.Join(seeds, ","), "KGO_TEST_RF="+strconv.Itoa(rf),
		"KGO_TEST_RECORDS="+records, "KGO_LOG_LEVEL=none", "GOFLAGS=")
	logPath := filepath.Join(t.TempDir(), "franz-go-suite.log")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	elapsed := time.Since(t0)
	os.WriteFile(logPath, out.Bytes(), 0o644)
	passed := map[string]time.Duration{}
	result := regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+s)\)`)
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var failed []string
	for sc.Scan() {
		m := result.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		d, _ := time.ParseDuration(m[3])
		if m[1] == "PASS" {
			passed[m[2]] = d
		} else {
			failed = append(failed, m[1]+" "+m[2])
		}
	}
	tail := func() string {
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		return strings.Join(lines[max(0, len(lines)-60):], "\n")
	}
	if err != nil || len(failed) > 0 {
		t.Fatalf("franz-go suite (%s records, %v): %v; not passed: %v\n(full output %s)\n%s", records, elapsed.Round(time.Millisecond), err, failed, logPath, tail())
	}
	for _, name := range want {
		if _, ok := passed[name]; !ok {
			t.Errorf("franz-go suite: %s did not report PASS", name)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", tail())
	}
	return passed, elapsed
}
