package storage

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// truncKillChild is the process TestTruncateBackSIGKILL kills: it appends
// batches of 1..6 records rec(offset), syncing each, and truncates now and
// then, printing "D end" once an append is durable, "T off" before a
// truncation and "t end" after it. During its kill-th truncation it SIGKILLs
// itself at a random step of the file work (or right after it).
func truncKillChild(dir string, seed uint64, kill int) {
	l, _, err := Open(dir, Options{SegmentBytes: 2048})
	if err != nil {
		fmt.Println("E", err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	out := bufio.NewWriter(os.Stdout)
	die := func() {
		out.Flush()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	for {
		end := int(l.EndOffset())
		n := 1 + rng.IntN(6)
		recs := make([]Record, n)
		for j := range recs {
			recs[j] = rec(end+j, 60)
		}
		if _, err := l.Append(recs); err != nil {
			fmt.Fprintln(out, "E", err)
			out.Flush()
			os.Exit(1)
		}
		if err := l.SyncTo(int64(end + n)); err != nil {
			fmt.Fprintln(out, "E", err)
			out.Flush()
			os.Exit(1)
		}
		fmt.Fprintln(out, "D", end+n)
		if rng.IntN(3) == 0 && end > 10 {
			off := int64(end) - rng.Int64N(int64(end)/2+1)
			fmt.Fprintln(out, "T", off)
			out.Flush()
			if kill--; kill == 0 {
				truncateHook = func(step string) error {
					if rng.IntN(3) == 0 {
						die()
					}
					return nil
				}
			}
			got, err := l.TruncateBack(off)
			if err != nil {
				fmt.Println("E", err)
				os.Exit(1)
			}
			fmt.Fprintln(out, "t", got)
			if kill == 0 {
				die()
			}
		}
		out.Flush()
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("KATKA_TRUNC_CHILD"); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv("KATKA_TRUNC_SEED"), 10, 64)
		kill, _ := strconv.Atoi(os.Getenv("KATKA_TRUNC_KILL"))
		truncKillChild(dir, seed, kill)
	}
	os.Exit(m.Run())
}

// A process killed (SIGKILL) while it appends and truncates leaves a log
// that opens clean: every record is rec(its offset), and the end is either
// the old one (at least what was reported durable) or the truncation's.
func TestTruncateBackSIGKILL(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(42, 42))
	for round := 0; round < 16; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		if emu := os.Getenv("KATKA_TEST_EXEC"); emu != "" {
			// Under qemu-user (make test-arm) the test binary is not a
			// host executable: the child runs through the same emulator.
			cmd = exec.Command(emu, os.Args[0], "-test.run=^$")
		}
		cmd.Env = append(os.Environ(), "KATKA_TRUNC_CHILD="+dir, fmt.Sprintf("KATKA_TRUNC_SEED=%d", round),
			fmt.Sprintf("KATKA_TRUNC_KILL=%d", 1+rng.IntN(10)))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		durable, inflight := int64(0), int64(-1)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() { // until the child killed itself
			f := strings.Fields(sc.Text())
			v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			switch f[0] {
			case "E":
				cmd.Process.Kill()
				t.Fatalf("round %d: child: %s", round, sc.Text())
			case "D":
				durable, inflight = v, -1
			case "T":
				inflight = v
			case "t":
				durable, inflight = v, -1
			}
		}
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: child ended with %v, want killed", round, err)
		}
		l, _, err := Open(dir, Options{SegmentBytes: 2048})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		end := l.EndOffset()
		old := end >= durable
		cut := inflight >= 0 && end <= inflight && end > inflight-6
		if !old && !cut {
			t.Fatalf("round %d: log ends at %d; durable %d, truncation in flight at %d", round, end, durable, inflight)
		}
		checkAll(t, l, int(l.StartOffset()), int(end), 60)
		if _, err := os.Stat(dir + "/" + truncateFile); !os.IsNotExist(err) {
			t.Fatalf("round %d: intent left after open: %v", round, err)
		}
		state := "new"
		switch {
		case inflight < 0:
			state = "killed after the truncation"
		case old && !cut:
			state = "old"
		}
		t.Logf("round %d: killed with a truncation at %d in flight, durable %d: log ends at %d (%s)", round, inflight, durable, end, state)
		l.Close()
	}
}
