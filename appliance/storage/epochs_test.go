package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The cases of Kafka's LeaderEpochFileCacheTest, in a small script: "a E S"
// assigns epoch E at S, "leo X" sets the log end offset, "fe X" / "fs X"
// truncate from the end / start, "clear", and the checks "entries E:S ...",
// "end R E O" (EndOffsetFor(R) is (E, O)), "latest E" ("latest none").
var epochCacheCases = []struct{ name, script string }{
	{"shouldAddEpochAndMessageOffsetToCache", "a 2 10; leo 11; latest 2; entries 2:10; end 2 2 11"},
	{"shouldReturnLogEndOffsetIfLatestEpochRequested", "a 2 11; a 2 12; leo 14; end 2 2 14"},
	{"shouldReturnUndefinedOffsetIfUndefinedEpochRequested", "a 2 11; a 3 12; end -1 -1 -1"},
	{"shouldNotOverwriteLogEndOffsetForALeaderEpochOnceItHasBeenAssigned", "leo 9; a 2 9; a 2 10; entries 2:9"},
	{"shouldEnforceMonotonicallyIncreasingStartOffsets", "a 2 9; a 3 9; entries 3:9"},
	{"shouldNotOverwriteOffsetForALeaderEpochOnceItHasBeenAssigned", "a 2 6; a 2 10; entries 2:6"},
	{"shouldReturnUnsupportedIfNoEpochRecorded", "end 0 -1 -1"},
	{"shouldReturnUnsupportedIfNoEpochRecordedAndUndefinedEpochRequested", "leo 73; end -1 -1 -1"},
	{"shouldReturnFirstEpochIfRequestedEpochLessThanFirstEpoch", "a 5 11; a 6 12; a 7 13; end 4 4 11"},
	{"shouldTruncateIfMatchingEpochButEarlierStartingOffset", "a 5 11; a 6 12; a 7 13; a 7 12; end 5 5 12; end 6 5 12; entries 5:11 7:12"},
	{"shouldGetFirstOffsetOfSubsequentEpochWhenOffsetRequestedForPreviousEpoch", "a 1 11; a 1 12; a 2 13; a 2 14; a 3 15; a 3 16; leo 17; end 2 2 15"},
	{"shouldReturnNextAvailableEpochIfThereIsNoExactEpochForTheOneRequested", "a 0 10; a 2 13; a 4 17; end 1 0 13; end 2 2 17; end 3 2 17"},
	{"shouldNotUpdateEpochAndStartOffsetIfItDidNotChange", "a 2 6; a 2 7; entries 2:6"},
	{"shouldReturnInvalidOffsetIfEpochIsRequestedWhichIsNotCurrentlyTracked", "leo 100; a 2 100; end 3 -1 -1"},
	{"shouldSupportEpochsThatDoNotStartFromZero", "a 2 6; leo 7; end 2 2 7; entries 2:6"},
	{"shouldEnforceMonotonicallyIncreasingEpochs", "a 1 5; leo 6; a 2 6; leo 7; a 1 7; leo 8; latest 1; end 1 1 8; end 2 -1 -1; entries 1:7"},
	{"shouldEnforceOffsetsIncreaseMonotonically", "a 2 6; a 3 5; entries 3:5"},
	{"shouldIncreaseAndTrackEpochsAsLeadersChangeManyTimes", "a 0 0; a 1 0; latest 1; end 1 1 0; end 0 0 0; leo 5; end 1 1 5; end 0 0 0; a 2 5; leo 10; end 2 2 10; end 1 1 5; end 0 0 0"},
	{"shouldIncreaseAndTrackEpochsAsFollowerReceivesManyMessages", "a 0 0; leo 1; a 0 1; leo 2; a 0 2; leo 3; latest 0; end 0 0 3; a 1 3; leo 4; a 1 4; leo 5; a 1 5; leo 6; latest 1; end 1 1 6; a 2 6; leo 7; a 2 7; leo 8; a 2 8; leo 9; latest 2; end 2 2 9; end 0 0 3; end 1 1 6"},
	{"shouldDropEntriesOnEpochBoundaryWhenRemovingLatestEntries", "a 2 6; a 3 8; a 4 11; fe 8; entries 2:6"},
	{"shouldPreserveResetOffsetOnClearEarliestIfOneExists", "a 2 6; a 3 8; a 4 11; fs 8; entries 3:8 4:11"},
	{"shouldUpdateSavedOffsetWhenOffsetToClearToIsBetweenEpochs", "a 2 6; a 3 8; a 4 11; fs 9; entries 3:9 4:11"},
	{"shouldNotClearAnythingIfOffsetToEarly", "a 2 6; a 3 8; a 4 11; fs 1; entries 2:6 3:8 4:11"},
	{"shouldNotClearAnythingIfOffsetToFirstOffset", "a 2 6; a 3 8; a 4 11; fs 6; entries 2:6 3:8 4:11"},
	{"shouldRetainLatestEpochOnClearAllEarliest", "a 2 6; a 3 8; a 4 11; fs 11; entries 4:11"},
	{"shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest", "a 2 6; a 3 8; a 4 11; fs 9; entries 3:9 4:11"},
	{"shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest2", "a 0 0; a 1 7; a 2 10; fs 5; entries 0:5 1:7 2:10"},
	{"shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset", "a 2 6; a 3 8; a 4 11; fs 15; entries 4:15"},
	{"shouldDropEntriesBetweenEpochBoundaryWhenRemovingNewest", "a 2 6; a 3 8; a 4 11; fe 9; latest 3; entries 2:6 3:8"},
	{"shouldClearAllEntries", "a 2 6; a 3 8; a 4 11; clear; entries"},
	{"shouldNotResetEpochHistoryHeadIfUndefinedPassed", "a 2 6; a 3 8; a 4 11; fe -1; entries 2:6 3:8 4:11"},
	{"shouldFetchLatestEpochOfEmptyCache", "latest none"},
	{"shouldFetchEndOffsetOfEmptyCache", "end 7 -1 -1"},
	{"shouldClearEarliestOnEmptyCache", "fs 7; entries"},
	{"shouldClearLatestOnEmptyCache", "fe 7; entries"},
	// katka's own.
	{"assign ignores an older start for the latest epoch only", "a 1 0; a 3 10; a 3 12; a 3 11; entries 1:0 3:10"},
	{"truncate from end then a new leader's epoch", "a 1 0; a 3 10; fe 10; a 4 10; entries 1:0 4:10; end 3 1 10; end 2 1 10"},
	{"truncate from end inside the latest epoch keeps it", "a 1 0; a 3 10; fe 12; entries 1:0 3:10"},
}

func TestEpochCacheKafkaCases(t *testing.T) {
	for _, tc := range epochCacheCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := OpenEpochCache(dir)
			if err != nil {
				t.Fatal(err)
			}
			var leo int64
			num := func(s string) int64 {
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					t.Fatalf("script: %q", s)
				}
				return v
			}
			for _, st := range strings.Split(tc.script, ";") {
				f := strings.Fields(st)
				var err error
				switch f[0] {
				case "a":
					err = c.Assign(int32(num(f[1])), num(f[2]))
				case "leo":
					leo = num(f[1])
				case "fe":
					err = c.TruncateFromEnd(num(f[1]))
				case "fs":
					err = c.TruncateFromStart(num(f[1]))
				case "clear":
					err = c.Clear()
				case "entries":
					if got, want := fmtEntries(c.Entries()), strings.Join(f[1:], " "); got != want {
						t.Fatalf("after %q: entries %q, want %q", st, got, want)
					}
				case "end":
					e, o := c.EndOffsetFor(int32(num(f[1])), leo)
					if e != int32(num(f[2])) || o != num(f[3]) {
						t.Fatalf("%q: got (%d, %d)", st, e, o)
					}
				case "latest":
					e, _, ok := c.Latest()
					if (f[1] == "none") == ok || (ok && e != int32(num(f[1]))) {
						t.Fatalf("%q: got %d %v", st, e, ok)
					}
				default:
					t.Fatalf("script: %q", st)
				}
				if err != nil {
					t.Fatalf("%q: %v", st, err)
				}
			}
			// Whatever the cache holds is what the file holds.
			c2, err := OpenEpochCache(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fmtEntries(c2.Entries()), fmtEntries(c.Entries()); got != want {
				t.Fatalf("reopened: %q, want %q", got, want)
			}
		})
	}
}

func fmtEntries(es []EpochEntry) string {
	var b []string
	for _, e := range es {
		b = append(b, fmt.Sprintf("%d:%d", e.Epoch, e.StartOffset))
	}
	return strings.Join(b, " ")
}

func TestEpochCheckpointFormatAndDamage(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenEpochCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(3, 1234567890123); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, EpochCheckpointFile)
	raw, _ := os.ReadFile(path)
	if string(raw) != "0\n2\n0 0\n3 1234567890123\n" {
		t.Fatalf("file %q", raw)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
	if err := c.Assign(-1, 5); err == nil {
		t.Fatal("negative epoch assigned")
	}
	for _, bad := range []string{
		"", "0\n", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0 0\n1 5\n", "0\n1\n0 0", "0\n1\n0\n", "0\n1\nx 1\n",
		"0\n1\n-1 0\n", "0\n2\n3 10\n2 11\n", "0\n2\n2 10\n3 9\n", "0\n99999999999\n", "0\n1\n0 0 0\n",
	} {
		os.WriteFile(path, []byte(bad), 0o640)
		if _, err := OpenEpochCache(dir); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("damaged %q: %v", bad, err)
		}
	}
	// Rebuilt from the log's batches.
	l := openT(t, filepath.Join(dir, "log"), 2048)
	defer l.Close()
	for e := int32(0); e < 6; e += 2 {
		recs := []Record{rec(0, 300), rec(1, 300), rec(2, 300)}
		if _, err := l.AppendFormat(recs, BatchFormat{LeaderEpoch: e}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AdvanceStart(1); err != nil {
		t.Fatal(err)
	}
	es, err := l.ScanEpochs()
	if err != nil {
		t.Fatal(err)
	}
	c, err = RebuildEpochCache(dir, es)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmtEntries(c.Entries()); got != "0:1 2:3 4:6" {
		t.Fatalf("rebuilt %q", got)
	}
	if c2, err := OpenEpochCache(dir); err != nil || fmtEntries(c2.Entries()) != "0:1 2:3 4:6" {
		t.Fatalf("reopened rebuilt cache: %v", err)
	}
	if e, o := c.EndOffsetFor(2, l.EndOffset()); e != 2 || o != 6 {
		t.Fatalf("EndOffsetFor(2) = %d, %d", e, o)
	}
	// A write that fails leaves the cache as it was (a directory where the
	// temp file goes fails the write, even for root).
	if err := os.Mkdir(path+".tmp", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := c.Assign(9, 100); err == nil {
		t.Fatal("assign with an unwritable directory succeeded")
	}
	if got := fmtEntries(c.Entries()); got != "0:1 2:3 4:6" {
		t.Fatalf("after a failed write: %q", got)
	}
	os.Remove(path + ".tmp")
	if err := c.Assign(9, 100); err != nil || fmtEntries(c.Entries()) != "0:1 2:3 4:6 9:100" {
		t.Fatalf("assign after the failure: %v %q", err, fmtEntries(c.Entries()))
	}
}

// Concurrent assigns, truncations and reads keep the file and the cache
// consistent (-race).
func TestEpochCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenEpochCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				e := int32(i*4 + g)
				if err := c.Assign(e, int64(e)*10); err != nil {
					t.Error(err)
				}
				c.EndOffsetFor(e, 1000)
				c.Latest()
				if i%5 == 4 {
					if err := c.TruncateFromStart(int64(i)); err != nil {
						t.Error(err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	es := c.Entries()
	for i := 1; i < len(es); i++ {
		if es[i].Epoch <= es[i-1].Epoch || es[i].StartOffset < es[i-1].StartOffset {
			t.Fatalf("not increasing: %v", es)
		}
	}
	c2, err := OpenEpochCache(dir)
	if err != nil || fmtEntries(c2.Entries()) != fmtEntries(es) {
		t.Fatalf("file differs from the cache: %v", err)
	}
}
