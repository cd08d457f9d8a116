package broker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// txnTestBatch is a transactional batch of one record of producer pid, or,
// with marker set, its COMMIT (commit) or ABORT control batch.
func txnTestBatch(pid int64, key, value string, marker, commit bool) []byte {
	h := recordbatch.Header{ProducerID: pid, ProducerEpoch: 0, BaseSequence: 0, NumRecords: 1,
		FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(), Attributes: recordbatch.AttrTransactional}
	k, v := []byte(key), []byte(value)
	if marker {
		h.Attributes |= recordbatch.AttrControl
		h.BaseSequence = -1
		typ := byte(0)
		if commit {
			typ = 1
		}
		k, v = []byte{0, 0, 0, typ}, []byte{0, 0, 0, 0, 0, 0}
	}
	b := recordbatch.AppendHeader(nil, &h)
	b = recordbatch.AppendRecord(b, 0, 0, k, v, nil)
	recordbatch.Seal(b)
	return b
}

// TestCompactionKeepsTransactions: on a compacted topic, compaction of sealed
// segments holding transactions (as Kafka's cleaner): an aborted record is
// removed and never counts as its key's latest value (the committed value
// before it stays); a record of a transaction with no marker yet is kept and
// does not count either (the committed value before it stays: the
// transaction may still abort); both markers stay, as the data they decide
// is still in the log. Without the transaction scan, compaction removed the
// committed values of both keys.
func TestCompactionKeepsTransactions(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateTopic("st", 1, TopicConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	app := func(batch []byte) {
		t.Helper()
		if _, err := b.AppendBatch(ctx, "st", 0, batch, AcksLeader, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Produce(ctx, "st", 0, []Record{{Key: []byte("b"), Value: []byte("b-old")}}, AcksLeader); err != nil {
		t.Fatal(err)
	}
	app(txnTestBatch(1, "a", "a-committed", false, false))
	app(txnTestBatch(1, "", "", true, true))
	app(txnTestBatch(2, "a", "a-aborted", false, false))
	app(txnTestBatch(2, "", "", true, false))
	app(txnTestBatch(3, "b", "b-open", false, false))
	// A committed transaction's value supersedes the plain one before it:
	// its key counts once the marker is read.
	if _, err := b.Produce(ctx, "st", 0, []Record{{Key: []byte("c"), Value: []byte("c-old")}}, AcksLeader); err != nil {
		t.Fatal(err)
	}
	app(txnTestBatch(4, "c", "c-committed", false, false))
	app(txnTestBatch(4, "", "", true, true))
	// Fill and seal segments (64 KiB) with other keys, each written twice.
	for round := range 2 {
		recs := make([]Record, 1000)
		for i := range recs {
			recs[i] = Record{Key: []byte(fmt.Sprintf("f%d", i)), Value: []byte(fmt.Sprintf("%d %0100d", round, i))}
		}
		if _, err := b.Produce(ctx, "st", 0, recs, AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	b.CompactTopics(time.Now())
	info, _ := b.PartitionInfo("st", 0)
	var got []string
	fillers := 0
	for off := int64(0); off < info.HighWatermark; {
		res, err := b.Fetch(ctx, "st", 0, off, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			if strings.HasPrefix(string(r.Key), "f") {
				fillers++
			} else {
				got = append(got, string(r.Value))
			}
		}
		off = res.Records[len(res.Records)-1].Offset + 1
	}
	sort.Strings(got)
	if want := "a-committed,b-old,b-open,c-committed"; strings.Join(got, ",") != want {
		t.Fatalf("after compaction: %v, want %s", got, want)
	}
	if fillers >= 2000 {
		t.Fatalf("compaction removed nothing (%d filler records left)", fillers)
	}
	// Both markers are still in the log.
	bf, err := b.FetchBatches(ctx, "st", 0, 0, info.HighWatermark, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var markers []string
	for raw, rest, ok := recordbatch.Next(bf.Batches); ok; raw, rest, ok = recordbatch.Next(rest) {
		if commit, ok := recordbatch.ControlType(raw); ok {
			markers = append(markers, fmt.Sprint(commit))
		}
	}
	if strings.Join(markers, ",") != "true,false,true" {
		t.Fatalf("markers after compaction (commit?): %v, want [true false true]", markers)
	}
}
