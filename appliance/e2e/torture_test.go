package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

// The crash torture test: concurrent producers, SIGKILL at a random moment,
// damage to the unacknowledged end of a tail segment (torn writes, zero fill,
// garbage, bit flips), restart, then a full read-back against a model of every
// record sent. Acknowledged records must all come back at their offsets, byte
// for byte; nothing that was never sent may ever be served.
//
// Environment:
//
//	KATKA_TORTURE_ROUNDS      rounds of the crash test (default 50)
//	KATKA_TORTURE_SEED        replay a run (the seed is printed at start)
//	KATKA_TORTURE_FULL_EVERY  read whole partitions every N rounds and in the
//	                          last one (default: every round up to 50 rounds,
//	                          else ceil(rounds/25), so that long runs stay
//	                          linear); other rounds read from the segment
//	                          before each tail, all that damage and recovery
//	                          can reach, and everything written since
//	KATKA_BIN                 use this katka binary instead of building one
//	                          (absolute, or relative to appliance/e2e)

const tortureTopic = "torture"

// envInt reads a positive integer from the environment, or returns def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// tortureSeed returns $KATKA_TORTURE_SEED or a fresh random seed.
func tortureSeed(t testing.TB) uint64 {
	t.Helper()
	if v := os.Getenv("KATKA_TORTURE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("KATKA_TORTURE_SEED=%q: %v", v, err)
		}
		return s
	}
	return rand.Uint64() >> 1
}

// recordID packs the identity of a record: round, writer and the writer's
// sequence number. It is stored in the first 8 bytes of the record's value.
func recordID(round, writer, seq int) uint64 {
	return uint64(round)<<40 | uint64(writer)<<32 | uint64(seq)
}

func formatID(id uint64) string {
	return fmt.Sprintf("r%d/w%d/s%d", id>>40, (id>>32)&0xff, id&0xffffffff)
}

// genRecord derives a record's key, value and headers from its id, so that any
// record read back can be checked byte for byte without keeping its bytes. The
// value is 10 B..4 KiB (log-uniform): the id, then filler from a PRNG seeded by
// the id. Keys are null, empty or random; header values may be null or empty.
func genRecord(seed, id uint64) (key, value []byte, headers []Header) {
	r := rand.New(rand.NewPCG(seed, id))
	size := int(math.Round(10 * math.Pow(4096.0/10, r.Float64())))
	size = min(max(size, 10), 4096)
	value = make([]byte, size)
	binary.BigEndian.PutUint64(value, id)
	fill(r, value[8:])
	switch n := r.IntN(8); {
	case n < 2:
		key = nil
	case n == 2:
		key = []byte{}
	default:
		key = make([]byte, 1+r.IntN(32))
		fill(r, key)
	}
	for i := range max(0, r.IntN(4)-1) {
		h := Header{Key: fmt.Sprintf("h%d-%x", i, r.Uint32())}
		switch r.IntN(6) {
		case 0: // null value
		case 1:
			h.Value = []byte{}
		default:
			h.Value = make([]byte, 1+r.IntN(16))
			fill(r, h.Value)
		}
		headers = append(headers, h)
	}
	return key, value, headers
}

func fill(r *rand.Rand, b []byte) {
	var x uint64
	for i := range b {
		if i%8 == 0 {
			x = r.Uint64()
		}
		b[i] = byte(x)
		x >>= 8
	}
}

// sameBytes compares two byte slices including null-ness.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// sentRecord is what the model remembers of a record it sent; its bytes are
// regenerated from the id.
type sentRecord struct {
	part  int
	ts    int64
	off   int64 // offset known from a produce answer or from a read; -1 if unknown
	acked bool
}

// model is the test's knowledge of every record sent to a topic.
type model struct {
	seed  uint64
	topic string

	mu       sync.Mutex
	sent     map[uint64]*sentRecord
	acked    []map[int64]uint64 // per partition: acknowledged offset -> record id
	maxAcked []int64            // per partition: highest acknowledged offset, -1 if none
	problems []string

	nSent, nAcked, nTransportErrs int
}

func newModel(seed uint64, topic string, partitions int) *model {
	m := &model{seed: seed, topic: topic, sent: map[uint64]*sentRecord{}}
	for range partitions {
		m.acked = append(m.acked, map[int64]uint64{})
		m.maxAcked = append(m.maxAcked, -1)
	}
	return m
}

// problem records a failure; the round fails at its end.
func (m *model) problem(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

// takeProblems returns and clears the problems recorded so far.
func (m *model) takeProblems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.problems
	m.problems = nil
	return p
}

// produceBatch sends n generated records to one partition and updates the
// model: every record is registered as sent before the request leaves, and
// only a 200 answer to acks=all or acks=1 makes the records acknowledged. It
// returns the transport error, if any (a dead server is expected during the
// torture); API errors from a live server are recorded as problems.
func (m *model) produceBatch(ctx context.Context, k *Katka, part, round, writer int, seq *int, n int, acks string, rng *rand.Rand) error {
	recs := make([]ProduceRecord, n)
	ids := make([]uint64, n)
	now := time.Now().UnixMilli()
	m.mu.Lock()
	for i := range recs {
		id := recordID(round, writer, *seq)
		*seq++
		key, value, headers := genRecord(m.seed, id)
		ts := now - int64(rng.IntN(1000))
		recs[i] = ProduceRecord{Key: key, Value: value, Headers: headers, TimestampMs: ts}
		ids[i] = id
		m.sent[id] = &sentRecord{part: part, ts: ts, off: -1}
		m.nSent++
	}
	m.mu.Unlock()
	base, err := k.Produce(ctx, m.topic, part, acks, recs)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			m.problem("produce %d records to partition %d with acks=%s: %v", n, part, acks, err)
			return nil
		}
		m.mu.Lock()
		m.nTransportErrs++
		m.mu.Unlock()
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, id := range ids {
		off := base + int64(i)
		s := m.sent[id]
		s.off = off
		if acks == "0" {
			continue
		}
		if prev, ok := m.acked[part][off]; ok {
			m.problems = append(m.problems, fmt.Sprintf("partition %d offset %d acknowledged twice: for %s and now for %s",
				part, off, formatID(prev), formatID(id)))
		}
		s.acked = true
		m.acked[part][off] = id
		m.maxAcked[part] = max(m.maxAcked[part], off)
		m.nAcked++
	}
	return nil
}

// checkRecord compares a record read at partition p with what was sent and
// returns why it is a phantom ("" if it is a record the test sent, unchanged,
// at the only offset it may have). It also returns the record's id.
func (m *model) checkRecord(p int, r FetchedRecord) (id uint64, phantom string) {
	if len(r.Value) < 8 {
		return 0, fmt.Sprintf("value of %d bytes holds no record id", len(r.Value))
	}
	id = binary.BigEndian.Uint64(r.Value)
	m.mu.Lock()
	s, ok := m.sent[id]
	m.mu.Unlock()
	if !ok {
		return id, fmt.Sprintf("unknown record id %016x", id)
	}
	if s.part != p {
		return id, fmt.Sprintf("record %s was sent to partition %d", formatID(id), s.part)
	}
	key, value, headers := genRecord(m.seed, id)
	switch {
	case !sameBytes(r.Value, value):
		return id, fmt.Sprintf("record %s: value differs from what was sent (%d bytes read, %d sent)", formatID(id), len(r.Value), len(value))
	case !sameBytes(r.Key, key):
		return id, fmt.Sprintf("record %s: key differs (read %q null=%v, sent %q null=%v)", formatID(id), r.Key, r.Key == nil, key, key == nil)
	case r.TimestampMs != s.ts:
		return id, fmt.Sprintf("record %s: timestamp %d, sent %d", formatID(id), r.TimestampMs, s.ts)
	case len(r.Headers) != len(headers):
		return id, fmt.Sprintf("record %s: %d headers, sent %d", formatID(id), len(r.Headers), len(headers))
	}
	for i, h := range headers {
		if r.Headers[i].Key != h.Key || !sameBytes(r.Headers[i].Value, h.Value) {
			return id, fmt.Sprintf("record %s: header %d is %q=%q (null=%v), sent %q=%q (null=%v)", formatID(id), i,
				r.Headers[i].Key, r.Headers[i].Value, r.Headers[i].Value == nil, h.Key, h.Value, h.Value == nil)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.off >= 0 && s.off != r.Offset {
		return id, fmt.Sprintf("record %s served at offset %d, but its offset is %d", formatID(id), r.Offset, s.off)
	}
	s.off = r.Offset
	return id, ""
}

// verifyResult summarizes one read-back of a partition.
type verifyResult struct {
	start, hw      int64
	records        int     // records read
	unackedPresent int     // of which not acknowledged
	corrupt        []int64 // offsets reported corrupt and allowed to be
	lost, phantoms int
}

// verify reads partition p from offset from up to its high watermark and
// checks every record against the model: acknowledged offsets must hold their
// record, byte-identical; every record must be one that was sent, at its only
// possible offset; corrupt_record is accepted only where allowCorrupt says so.
func (m *model) verify(ctx context.Context, k *Katka, p int, from int64, allowCorrupt func(off int64) bool) verifyResult {
	var res verifyResult
	const maxReports = 20
	report := func(format string, args ...any) {
		if res.lost+res.phantoms <= maxReports {
			m.problem(format, args...)
		}
	}
	onRecord := func(r FetchedRecord) {
		res.records++
		id, phantom := m.checkRecord(p, r)
		m.mu.Lock()
		ackedID, isAcked := m.acked[p][r.Offset]
		m.mu.Unlock()
		if phantom != "" {
			res.phantoms++
			report("PHANTOM at partition %d offset %d: %s", p, r.Offset, phantom)
		}
		switch {
		case isAcked && (phantom != "" || id != ackedID):
			res.lost++
			report("LOST ACKED: partition %d offset %d should hold acknowledged %s, holds a record with id %016x", p, r.Offset, formatID(ackedID), id)
		case !isAcked:
			res.unackedPresent++
		}
	}
	onCorrupt := func(off int64) {
		if allowCorrupt(off) {
			res.corrupt = append(res.corrupt, off)
			return
		}
		res.lost++
		m.mu.Lock()
		ackedID, isAcked := m.acked[p][off]
		m.mu.Unlock()
		if isAcked {
			report("LOST ACKED: partition %d offset %d (acknowledged %s) is reported corrupt_record", p, off, formatID(ackedID))
		} else {
			report("partition %d offset %d is reported corrupt_record where no corruption is allowed", p, off)
		}
	}
	start, hw, err := k.ScanPartition(ctx, m.topic, p, from, onRecord, onCorrupt)
	res.start, res.hw = start, hw
	if err != nil {
		m.problem("read partition %d from %d: %v", p, from, err)
		return res
	}
	if start != 0 {
		m.problem("partition %d: log start offset is %d; nothing may be deleted here (no retention applies)", p, start)
	}
	m.mu.Lock()
	var missing []int64
	if m.maxAcked[p] >= hw {
		for off := range m.acked[p] {
			if off >= hw {
				missing = append(missing, off)
			}
		}
	}
	m.mu.Unlock()
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		res.lost += len(missing)
		m.problem("LOST ACKED: partition %d: %d acknowledged records at offsets %d..%d are beyond the high watermark %d",
			p, len(missing), missing[0], missing[len(missing)-1], hw)
	}
	return res
}

// Damage kinds applied to the unacknowledged end of a tail segment.
const (
	dmgTruncate      = "truncate"
	dmgZeros         = "append_zeros"
	dmgRandom        = "append_random"
	dmgFlip          = "flip_byte"
	dmgTornDuplicate = "torn_duplicate"
)

// damageTail damages the tail segment of partition p beyond the end of its
// highest acknowledged record, and describes what it did.
func (m *model) damageTail(rng *rand.Rand, dataDir string, p int) (kind, desc string, err error) {
	segs, err := Segments(dataDir, m.topic, p)
	if err != nil {
		return "", "", err
	}
	if len(segs) == 0 {
		return "", "", fmt.Errorf("partition %d has no segment files", p)
	}
	tail := segs[len(segs)-1]
	buf, err := os.ReadFile(tail.Path)
	if err != nil {
		return "", "", err
	}
	frames, valid := storage.Frames(buf)
	ackedEnd := 0
	m.mu.Lock()
	high := m.maxAcked[p]
	m.mu.Unlock()
	// A frame is a record batch: the highest acknowledged offset is inside one.
	if len(frames) > 0 && high >= frames[0].Offset {
		found := false
		for _, f := range frames {
			if f.Offset <= high && high <= f.Last && !f.Lost {
				ackedEnd, found = f.End, true
				break
			}
		}
		if !found {
			return "", "", fmt.Errorf("LOST ACKED on disk: highest acknowledged offset %d of partition %d is not an intact frame of the tail segment %s (base %d, %d valid frames in the first %d of %d bytes)",
				high, p, tail.Path, tail.Base, len(frames), valid, len(buf))
		}
	}
	size := len(buf)
	where := fmt.Sprintf("partition %d tail %s (base %d, %d bytes, acked end %d)", p, tail.Path[len(dataDir)+1:], tail.Base, size, ackedEnd)
	switch rng.IntN(4) {
	case 0:
		n := ackedEnd + rng.IntN(size-ackedEnd+1)
		return dmgTruncate, fmt.Sprintf("%s: truncate to %d", where, n), os.Truncate(tail.Path, int64(n))
	case 1:
		n := 1 + rng.IntN(64<<10)
		return dmgZeros, fmt.Sprintf("%s: append %d zero bytes", where, n), appendFile(tail.Path, make([]byte, n))
	case 2:
		n := 1 + rng.IntN(64<<10)
		junk := make([]byte, n)
		fill(rng, junk)
		return dmgRandom, fmt.Sprintf("%s: append %d random bytes", where, n), appendFile(tail.Path, junk)
	}
	if size > ackedEnd {
		pos := ackedEnd + rng.IntN(size-ackedEnd)
		x := byte(1 + rng.IntN(255))
		return dmgFlip, fmt.Sprintf("%s: flip byte %d (xor %#02x)", where, pos, x), flipByte(tail.Path, int64(pos), x)
	}
	// Nothing unacknowledged in the tail: append a torn copy of a real frame.
	src, srcBuf := frames, buf
	for i := len(segs) - 2; len(src) == 0 && i >= 0; i-- {
		if srcBuf, err = os.ReadFile(segs[i].Path); err != nil {
			return "", "", err
		}
		src, _ = storage.Frames(srcBuf)
	}
	if len(src) == 0 {
		n := 1 + rng.IntN(64<<10)
		junk := make([]byte, n)
		fill(rng, junk)
		return dmgRandom, fmt.Sprintf("%s: no frame to copy; append %d random bytes", where, n), appendFile(tail.Path, junk)
	}
	f := src[rng.IntN(len(src))]
	dup := append([]byte(nil), srcBuf[f.Pos:f.End]...)
	pos := rng.IntN(len(dup))
	x := byte(1 + rng.IntN(255))
	dup[pos] ^= x
	return dmgTornDuplicate, fmt.Sprintf("%s: append copy of the frame of offset %d (%d bytes) with byte %d xor %#02x",
		where, f.Offset, len(dup), pos, x), appendFile(tail.Path, dup)
}

func appendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func flipByte(path string, pos int64, x byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], pos); err != nil {
		return err
	}
	b[0] ^= x
	_, err = f.WriteAt(b[:], pos)
	return err
}

// tortureStats are the figures printed at the end of the crash test.
type tortureStats struct {
	rounds, fullChecks             int
	lost, phantoms                 int
	corrupt                        map[[2]int64]bool // distinct (partition, offset) reported corrupt
	unackedPresent, recordsChecked int
	damage                         map[string]int
}

func (s *tortureStats) summary(m *model, seed uint64, elapsed time.Duration) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	kinds := make([]string, 0, len(s.damage))
	for k, n := range s.damage {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("torture summary: seed=%d rounds=%d full_checks=%d records_sent=%d acked=%d unacked=%d "+
		"unacked_present_at_end=%d lost_acked=%d phantoms=%d corrupt_unacked_skipped=%d records_read=%d damage: %s elapsed=%v",
		seed, s.rounds, s.fullChecks, m.nSent, m.nAcked, m.nSent-m.nAcked, s.unackedPresent, s.lost, s.phantoms,
		len(s.corrupt), s.recordsChecked, strings.Join(kinds, " "), elapsed.Round(time.Millisecond))
}

// TestTortureCrash is the crash torture: R rounds of concurrent produce,
// SIGKILL, damage beyond the acknowledged data, restart and full read-back, all
// on one data directory.
func TestTortureCrash(t *testing.T) {
	requireBinary(t)
	rounds := envInt(t, "KATKA_TORTURE_ROUNDS", 50)
	fullEvery := 1
	if rounds > 50 {
		fullEvery = (rounds + 24) / 25
	}
	fullEvery = envInt(t, "KATKA_TORTURE_FULL_EVERY", fullEvery)
	seed := tortureSeed(t)
	const partitions = 2
	fmt.Printf("torture: seed=%d rounds=%d full_every=%d (replay: KATKA_TORTURE_SEED=%d)\n", seed, rounds, fullEvery, seed)
	t.Logf("seed=%d rounds=%d full_every=%d", seed, rounds, fullEvery)
	t0 := time.Now()

	rng := rand.New(rand.NewPCG(seed, 0x746f7274757265))
	dataDir := t.TempDir()
	k := NewKatka(t, dataDir, testConfig)
	m := newModel(seed, tortureTopic, partitions)
	stats := &tortureStats{corrupt: map[[2]int64]bool{}, damage: map[string]int{}}
	ctx := context.Background()

	if err := k.Start(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if err := k.CreateTopic(ctx, tortureTopic, partitions); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	hw := make([]int64, partitions) // high watermarks after the last restart

	for round := 1; round <= rounds; round++ {
		// Concurrent writers until SIGKILL.
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		writers := 3 + rng.IntN(2)
		for w := range writers {
			wrng := rand.New(rand.NewPCG(seed, uint64(round)<<8|uint64(w)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := 0
				for wctx.Err() == nil {
					acks := "all"
					switch x := wrng.IntN(20); {
					case x < 3:
						acks = "0"
					case x == 3:
						acks = "1"
					}
					if m.produceBatch(wctx, k, wrng.IntN(partitions), round, w, &seq, 1+wrng.IntN(20), acks, wrng) != nil {
						time.Sleep(time.Millisecond) // server gone: wait for the cancel
						continue
					}
					time.Sleep(time.Duration(wrng.IntN(4000)) * time.Microsecond)
				}
			}()
		}
		killAfter := time.Duration(50+rng.IntN(351)) * time.Millisecond
		time.Sleep(killAfter)
		k.Kill()
		cancel()
		wg.Wait()

		// Where damage and recovery can reach: from the segment before each tail.
		from := make([]int64, partitions)
		for p := range partitions {
			from[p] = hw[p]
			segs, err := Segments(dataDir, tortureTopic, p)
			if err != nil {
				t.Fatalf("round %d: list segments of partition %d: %v", round, p, err)
			}
			if n := len(segs); n >= 2 {
				from[p] = min(from[p], segs[n-2].Base)
			} else {
				from[p] = 0
			}
		}

		p := rng.IntN(partitions)
		kind, desc, err := m.damageTail(rng, dataDir, p)
		if err != nil {
			t.Fatalf("round %d (seed %d): damage: %v", round, seed, err)
		}
		stats.damage[kind]++
		repro := fmt.Sprintf("seed=%d round=%d writers=%d kill_after=%v damage: %s", seed, round, writers, killAfter, desc)
		if testing.Verbose() {
			t.Logf("round %d: kill after %v, %s", round, killAfter, desc)
		}

		if err := k.Start(); err != nil {
			t.Fatalf("KATKA FAILED TO START after crash and damage (%s): %v", repro, err)
		}

		full := round%fullEvery == 0 || round == rounds
		if full {
			stats.fullChecks++
			clear(from)
		}
		results := make([]verifyResult, partitions)
		var vg sync.WaitGroup
		for p := range partitions {
			vg.Add(1)
			go func() {
				defer vg.Done()
				results[p] = m.verify(ctx, k, p, from[p], func(off int64) bool {
					m.mu.Lock()
					defer m.mu.Unlock()
					_, acked := m.acked[p][off]
					return !acked
				})
			}()
		}
		vg.Wait()
		stats.rounds = round
		for p, r := range results {
			hw[p] = r.hw
			stats.lost += r.lost
			stats.phantoms += r.phantoms
			stats.recordsChecked += r.records
			for _, off := range r.corrupt {
				stats.corrupt[[2]int64{int64(p), off}] = true
			}
			if round == rounds {
				stats.unackedPresent += r.unackedPresent
			}
		}
		if probs := m.takeProblems(); len(probs) > 0 {
			summary := stats.summary(m, seed, time.Since(t0))
			fmt.Println(summary)
			t.Log(summary)
			if len(probs) > 30 {
				probs = append(probs[:30], fmt.Sprintf("... and %d more", len(probs)-30))
			}
			t.Fatalf("round %d failed (%s):\n  %s", round, repro, strings.Join(probs, "\n  "))
		}
	}
	if err := k.Stop(); err != nil {
		t.Errorf("SIGTERM after the last round: %v", err)
	}
	summary := stats.summary(m, seed, time.Since(t0))
	fmt.Println(summary)
	t.Log(summary)
	if stats.lost != 0 || stats.phantoms != 0 {
		t.Errorf("lost acked %d, phantoms %d: both must be 0", stats.lost, stats.phantoms)
	}
	if m.nAcked == 0 {
		t.Errorf("no record was acknowledged in %d rounds: the test exercised nothing", rounds)
	}
}

// bitRotCase is one scenario of TestTortureBitRot.
type bitRotCase struct {
	name   string
	sealed bool // damage a sealed segment, else the tail
	prefix bool // damage the frame's length prefix, else a value byte
}

// TestTortureBitRot damages one acknowledged record of a cleanly stopped log
// (a value byte in a sealed segment or in the tail, or a length prefix byte in
// the tail): katka must start, report exactly the offsets of that record's
// batch (one WAL entry) as corrupt_record, never serve their bytes, and serve
// every other record unchanged, also after a second restart.
func TestTortureBitRot(t *testing.T) {
	requireBinary(t)
	seed := tortureSeed(t)
	fmt.Printf("torture bit rot: seed=%d (replay: KATKA_TORTURE_SEED=%d)\n", seed, seed)
	t.Logf("seed=%d", seed)
	cases := []bitRotCase{
		{name: "sealed_value", sealed: true},
		{name: "tail_value"},
		{name: "tail_length_prefix", prefix: true},
		{name: "sealed_value_again", sealed: true},
		{name: "tail_value_again"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { runBitRot(t, seed+uint64(i), c) })
	}
}

func runBitRot(t *testing.T, seed uint64, c bitRotCase) {
	const topic = "rot"
	rng := rand.New(rand.NewPCG(seed, 0x626974726f74))
	dataDir := t.TempDir()
	k := NewKatka(t, dataDir, testConfig)
	m := newModel(seed, topic, 1)
	ctx := context.Background()
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	if err := k.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatalf("create topic: %v", err)
	}

	// Acknowledged records until there are sealed segments and a tail with a few frames.
	seq := 0
	for {
		if err := m.produceBatch(ctx, k, 0, 1, 0, &seq, 25, "all", rng); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if probs := m.takeProblems(); len(probs) > 0 {
			t.Fatalf("produce: %s", strings.Join(probs, "; "))
		}
		segs, err := Segments(dataDir, topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) >= 4 && m.nAcked >= 600 {
			buf, err := os.ReadFile(segs[len(segs)-1].Path)
			if err != nil {
				t.Fatal(err)
			}
			if frames, _ := storage.Frames(buf); len(frames) >= 3 {
				break
			}
		}
		if m.nAcked > 100000 {
			t.Fatalf("%d records acknowledged and the log still has only %d segments", m.nAcked, len(segs))
		}
	}
	total := int64(m.nAcked)
	if err := k.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	segs, err := Segments(dataDir, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var candidates []Segment
	if c.sealed {
		candidates = segs[:len(segs)-1]
	} else {
		candidates = segs[len(segs)-1:]
	}
	seg := candidates[rng.IntN(len(candidates))]
	buf, err := os.ReadFile(seg.Path)
	if err != nil {
		t.Fatal(err)
	}
	frames, valid := storage.Frames(buf)
	if valid != len(buf) || len(frames) < 2 {
		t.Fatalf("segment %s after a clean stop: %d frames, valid bytes %d of %d", seg.Path, len(frames), valid, len(buf))
	}
	f := frames[rng.IntN(len(frames)-1)] // never the last frame of its segment
	target := f.Offset                   // a frame is a record batch: all its offsets are reported
	inBatch := func(off int64) bool { return off >= f.Offset && off <= f.Last }
	nBatch := int(f.Last - f.Offset + 1)
	id, ok := m.acked[0][target]
	if !ok {
		t.Fatalf("offset %d in %s was never acknowledged", target, seg.Path)
	}
	var pos int
	if c.prefix {
		_, n := binary.Uvarint(buf[f.Pos:])
		pos = f.Pos + rng.IntN(n)
	} else {
		_, value, _ := genRecord(seed, id)
		i := bytes.Index(buf[f.Pos:f.End], value)
		if i < 0 {
			t.Fatalf("value of record %s (offset %d) not found in its frame in %s", formatID(id), target, seg.Path)
		}
		pos = f.Pos + i + rng.IntN(len(value))
	}
	x := byte(1 + rng.IntN(255))
	if err := flipByte(seg.Path, int64(pos), x); err != nil {
		t.Fatal(err)
	}
	desc := fmt.Sprintf("seed=%d %s: offset %d (record %s) in %s (base %d, %d frames): byte %d xor %#02x",
		seed, c.name, target, formatID(id), seg.Path[len(dataDir)+1:], seg.Base, len(frames), pos, x)
	t.Log(desc)

	for restart := 1; restart <= 2; restart++ {
		if err := k.Start(); err != nil {
			t.Fatalf("KATKA FAILED TO START after bit rot (%s), start %d: %v", desc, restart, err)
		}
		res := m.verify(ctx, k, 0, 0, inBatch)
		if probs := m.takeProblems(); len(probs) > 0 {
			t.Errorf("start %d after %s:\n  %s", restart, desc, strings.Join(probs, "\n  "))
		}
		if len(res.corrupt) != nBatch || res.corrupt[0] != target || res.corrupt[nBatch-1] != f.Last {
			t.Errorf("start %d after %s: offsets reported corrupt %v, want exactly %d..%d", restart, desc, res.corrupt, target, f.Last)
		}
		if res.hw != total || res.records != int(total)-nBatch {
			t.Errorf("start %d after %s: high watermark %d and %d records read, want %d and %d", restart, desc, res.hw, res.records, total, int(total)-nBatch)
		}
		if err := k.Stop(); err != nil {
			t.Fatalf("SIGTERM after start %d: %v", restart, err)
		}
		if t.Failed() {
			return
		}
	}
}
