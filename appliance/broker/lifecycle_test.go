package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestPartitionLimitPerBroker(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, func(o *Options) { o.MaxPartitions = 10 })
	if _, err := b.CreateTopic("a", 4, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("b", 4, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("c", 3, TopicConfig{}); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("create past the cap: %v", err)
	}
	if _, err := b.EnsureTopic("c", 3); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("ensure past the cap: %v", err)
	}
	if err := b.CreatePartitions("a", 7); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("create partitions past the cap: %v", err)
	}
	if _, err := b.CreateTopic("big", MaxTopicPartitions+1, TopicConfig{}); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("more than a topic may have: %v", err)
	}
	if err := b.CreatePartitions("a", MaxTopicPartitions+1); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("grow past what a topic may have: %v", err)
	}
	if n := b.PartitionCount(); n != 8 {
		t.Fatalf("refused creates left %d partitions counted, want 8", n)
	}
	if err := b.CreatePartitions("a", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("c", 1, TopicConfig{}); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("create at the cap: %v", err)
	}
	if err := b.DeleteTopic("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("c", 4, TopicConfig{}); err != nil {
		t.Fatalf("create after a delete freed partitions: %v", err)
	}
	b.Close()
	// A lower cap still loads every topic on disk, and refuses more.
	b = openB(t, dir, func(o *Options) { o.MaxPartitions = 5 })
	defer b.Close()
	if n := b.PartitionCount(); n != 10 || len(b.Topics()) != 2 {
		t.Fatalf("after reopen: %d partitions, topics %+v", n, b.Topics())
	}
	if _, err := b.CreateTopic("d", 1, TopicConfig{}); !errors.Is(err, ErrPartitionLimit) {
		t.Fatalf("create over a lowered cap: %v", err)
	}
	// The default cap is topics.max_partitions' default.
	d := openB(t, t.TempDir(), nil)
	defer d.Close()
	if d.MaxPartitions() != DefaultMaxPartitions || DefaultMaxPartitions != 4096 {
		t.Fatalf("default cap %d", d.MaxPartitions())
	}
}

func TestReservedTopicNames(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	for _, name := range []string{".deleted-x-1", ".hidden", ".deleted-orders-1700000000"} {
		if _, err := b.CreateTopic(name, 1, TopicConfig{}); !errors.Is(err, ErrInvalidTopic) {
			t.Fatalf("create %q: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused %q left a directory: %v", name, err)
		}
	}
	// In-process writers keep their "__" topics.
	if _, err := b.CreateTopic("__consumer_offsets", 1, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(context.Background(), "__consumer_offsets", 0, []Record{{Value: []byte("x")}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	if ts := b.Topics(); len(ts) != 1 || ts[0].Name != "__consumer_offsets" {
		t.Fatalf("after reopen: %+v", ts)
	}
}

// A create holds only its own name: while it is stopped between reserving the
// name and publishing the topic, other topics are produced to, listed and
// created, and the topic being created is not visible yet.
func TestCreateTopicDoesNotHoldBrokerLock(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateTopic("other", 1, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	reserved, release := make(chan struct{}), make(chan struct{})
	b.onReserve = func(name string) {
		if name == "big" {
			close(reserved)
			<-release
		}
	}
	created := make(chan error, 1)
	go func() {
		_, err := b.CreateTopic("big", 200, TopicConfig{})
		created <- err
	}()
	<-reserved
	if _, err := b.Produce(ctx, "other", 0, []Record{{Value: []byte("v")}}, AcksAll); err != nil {
		t.Fatalf("produce to another topic during a create: %v", err)
	}
	if res, err := b.Fetch(ctx, "other", 0, 0, 1<<20, 0); err != nil || len(res.Records) != 1 {
		t.Fatalf("fetch during a create: %+v %v", res, err)
	}
	if _, err := b.CreateTopic("small", 1, TopicConfig{}); err != nil {
		t.Fatalf("create of another topic during a create: %v", err)
	}
	if _, err := b.Topic("big"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("topic visible before its create finished: %v", err)
	}
	if _, err := b.Produce(ctx, "big", 0, []Record{{}}, AcksAll); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("produce to a topic being created: %v", err)
	}
	if n := b.PartitionCount(); n != 202 {
		t.Fatalf("partitions counted during the create: %d, want 202", n)
	}
	close(release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if info, err := b.Topic("big"); err != nil || info.Partitions != 200 {
		t.Fatalf("after the create: %+v %v", info, err)
	}
}

// A create of a name being deleted waits until the old directory is renamed
// aside, then makes an empty topic; a fetch waiting on the old topic ends with
// ErrUnknownTopic and never returns the new topic's records.
func TestCreateWaitsForDeleteOfSameName(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	defer b.Close()
	ctx := context.Background()
	old, err := b.CreateTopic("t", 1, TopicConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "t", 0, []Record{{Value: []byte("old")}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	// A fetch parked on the old topic, past its last record.
	parked := make(chan struct{})
	b.onFetchWait = func() { close(parked) }
	fetched := make(chan error, 1)
	go func() {
		res, err := b.Fetch(ctx, "t", 0, 1, 1<<20, time.Minute)
		if err == nil {
			err = fmt.Errorf("fetch on the deleted topic returned %d records, hw %d", len(res.Records), res.HighWatermark)
		}
		fetched <- err
	}()
	<-parked

	deleting, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.onReserve = func(name string) {
		once.Do(func() { close(deleting); <-release })
	}
	waiting := make(chan struct{})
	b.onBusyWait = func(name string) { close(waiting) }
	deleted := make(chan error, 1)
	go func() { deleted <- b.DeleteTopic("t") }()
	<-deleting
	created := make(chan error, 1)
	var info TopicInfo
	go func() {
		var err error
		info, err = b.CreateTopic("t", 1, TopicConfig{})
		created <- err
	}()
	<-waiting // the create reached the busy name and waits for the delete
	close(release)
	if err := <-fetched; !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("fetch waiting on a deleted topic: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if err := <-created; err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	if info.ID == old.ID {
		t.Fatal("new topic has the old topic's id")
	}
	res, err := b.Fetch(ctx, "t", 0, 0, 1<<20, 0)
	if err != nil || len(res.Records) != 0 || res.HighWatermark != 0 {
		t.Fatalf("new topic shows old data: %+v %v", res, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "t" && e.IsDir() {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
}

// Rounds of concurrent delete, create and produce of one name: no create fails
// but with ErrTopicExists (it ran before the delete), no produce fails but with
// ErrUnknownTopic, and after each round the topic holds only that round's records.
func TestConcurrentDeleteCreateProduce(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateTopic("t", 2, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	for i := range rounds {
		val := fmt.Sprint("round-", i)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		wg.Add(3)
		go func() {
			defer wg.Done()
			if err := b.DeleteTopic("t"); err != nil {
				errs <- fmt.Errorf("delete: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := b.CreateTopic("t", 2, TopicConfig{}); err != nil && !errors.Is(err, ErrTopicExists) {
				errs <- fmt.Errorf("create: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			for p := range int32(2) {
				if _, err := b.Produce(ctx, "t", p, []Record{{Value: []byte(val)}}, AcksAll); err != nil && !errors.Is(err, ErrUnknownTopic) {
					errs <- fmt.Errorf("produce: %w", err)
				}
				if res, err := b.Fetch(ctx, "t", p, 0, 1<<20, 0); err == nil {
					for _, r := range res.Records {
						if string(r.Value) != val && string(r.Value) != fmt.Sprint("round-", i-1) {
							errs <- fmt.Errorf("fetch during round %d saw %q", i, r.Value)
						}
					}
				} else if !errors.Is(err, ErrUnknownTopic) {
					errs <- fmt.Errorf("fetch: %w", err)
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", i, err)
		}
		if _, err := b.EnsureTopic("t", 2); err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			res, err := b.Fetch(ctx, "t", p, 0, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Records {
				if string(r.Value) != val {
					t.Fatalf("round %d: partition %d shows %q from an older topic", i, p, r.Value)
				}
			}
		}
	}
	if n := b.PartitionCount(); n != 2 {
		t.Fatalf("partitions counted after the rounds: %d", n)
	}
}

// Close waits for a create under way, and the created topic is closed with
// the others (no log left open, the topic loads at the next start).
func TestCloseWaitsForCreate(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	reserved, release := make(chan struct{}), make(chan struct{})
	b.onReserve = func(name string) {
		if name == "t" {
			close(reserved)
			<-release
		}
	}
	created := make(chan error, 1)
	go func() {
		_, err := b.CreateTopic("t", 3, TopicConfig{})
		created <- err
	}()
	<-reserved
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	// Close marks the broker closed, then waits for the create.
	for closing := false; !closing; runtime.Gosched() {
		b.mu.RLock()
		closing = b.closed
		b.mu.RUnlock()
	}
	if _, err := b.CreateTopic("u", 1, TopicConfig{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("create while closing: %v", err)
	}
	close(release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	b = openB(t, dir, nil)
	defer b.Close()
	if info, err := b.Topic("t"); err != nil || info.Partitions != 3 {
		t.Fatalf("after reopen: %+v %v", info, err)
	}
}
