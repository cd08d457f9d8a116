package e2e

// franz-go's own kgo integration suite against a 3-node katka cell: the same
// runner as TestFranzGoSuite, with KGO_SEEDS naming all three nodes and
// KGO_TEST_RF=3, so every topic the suite creates is replicated to every node
// and clients follow leaders across nodes. TestTxnEtl runs transactions whose
// coordinator, data partitions and group coordinators are on different nodes
// (kafka/txn_cell.go).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// franzGoCellTop are the top-level franz-go tests run against the cell, the
// same as against one node (TestFranzGoSuite). TestGroupSimple/848 needs the
// suite's ApiVersions probe done by an earlier test of the run (it skips
// otherwise), and the cell's common topic ids (a KIP-848 assignment names
// topics by id).
var franzGoCellTop = []string{"TestTxnEtl", "TestConsumeMaxDecompressBatchBytes", "TestPooling", "TestGroupSimple"}

// franzGoCellWant are the tests and subtests that must report PASS: those of
// the single-node run.
var franzGoCellWant = franzGoSuiteTests

// TestFranzGoSuiteCell starts a 3-node cell as TestCellReplicationFaults does,
// with the kafka limits of franzGoSuiteConfig, and runs franz-go's kgo suite
// tests franzGoCellTop against it with replication factor 3.
func TestFranzGoSuiteCell(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found to run franz-go's suite: %v", err)
	}
	net := newCellNet(t, 3)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(t, "cell", "init", "--name", "kgo", "--out", ca)
	var nodes []*cellProc
	var seeds []string
	for i := 1; i <= 3; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(t, "cell", "issue", "--ca", ca, "--out", cred)
		cfg := strings.Replace(cellNodeConfig(net.ip(i), cred, "kgo", 3), "kafka:\n",
			"kafka:\n  limits:\n    max_connections_per_ip: 5000\n", 1)
		nodes = append(nodes, net.node(i, cfg))
		seeds = append(seeds, net.ip(i)+":9092")
	}
	for _, n := range nodes {
		n.start()
	}
	waitUntil(t, 30*time.Second, "3 nodes to form the cell", func() bool {
		_, ok := agreed(nodes, []int32{1, 2, 3})
		return ok
	})
	top, want := franzGoCellTop, franzGoCellWant
	if extra := os.Getenv("KATKA_KGO_CELL_RUN"); extra != "" { // for exploring: other suite tests
		top, want = strings.Split(extra, "|"), nil
	}
	passed, elapsed := runFranzGoSuite(t, goTool, seeds, 3, "5000", 4*time.Minute, top, want)
	t.Logf("franz-go v1.22.2 suite passed against a 3-node cell (RF 3) in %v: %d tests and subtests (TestTxnEtl %v)",
		elapsed.Round(time.Millisecond), len(passed), passed["TestTxnEtl"])
}
