package e2e

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTopicConfigsSurviveRestart: against the real binary, a topic is
// created with the configs librdkafka's tests send (segment.bytes,
// compression.type=lz4), lz4 batches are produced into it, the legacy
// AlterConfigs (API 33) sets retention.ms (which reverts the others), and
// after a SIGKILL and restart the configs are described as before and the
// records read back.
func TestTopicConfigsSurviveRestart(t *testing.T) {
	k := newGroupKatka(t, t.TempDir())
	k.start()
	const topic = "configs"
	cl := k.client(t, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	adm := kadm.NewClient(cl)
	ctx := ctxFor(t, 30*time.Second)
	cr, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"segment.bytes":    kadm.StringPtr("131072"),
		"compression.type": kadm.StringPtr("lz4"),
	}, topic)
	if err != nil || cr.Err != nil {
		t.Fatalf("create with segment.bytes and compression.type=lz4: %v %+v", err, cr)
	}
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte("reading " + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	describe := func(adm *kadm.Client) map[string]kadm.Config {
		t.Helper()
		rc, err := adm.DescribeTopicConfigs(ctxFor(t, 10*time.Second), topic)
		if err != nil || rc[0].Err != nil {
			t.Fatalf("describe: %v %+v", err, rc)
		}
		out := map[string]kadm.Config{}
		for _, c := range rc[0].Configs {
			out[c.Key] = c
		}
		return out
	}
	if c := describe(adm)["compression.type"]; c.MaybeValue() != "lz4" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("compression.type %+v", c)
	}

	// AlterConfigs (33): retention.ms becomes the whole set.
	ar, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("86400000")}, {Name: "segment.bytes", Value: kadm.StringPtr("262144")}}, topic)
	if err != nil || ar[0].Err != nil {
		t.Fatalf("AlterConfigs: %v %+v", err, ar)
	}
	if ar, _ := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "no.such.config", Value: kadm.StringPtr("1")}}, topic); !errors.Is(ar[0].Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %+v", ar)
	}
	cl.Close()

	k.kill()
	k.start()
	cl2 := k.client(t)
	adm2 := kadm.NewClient(cl2)
	got := describe(adm2)
	for name, want := range map[string]string{"retention.ms": "86400000", "segment.bytes": "262144"} {
		if c := got[name]; c.MaybeValue() != want || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Errorf("after restart %s = %+v, want %s set on the topic", name, c, want)
		}
	}
	if c := got["compression.type"]; c.MaybeValue() != "producer" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("after restart compression.type = %+v, want the default (AlterConfigs replaced the set)", c)
	}
	cons := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	n := 0
	for n < 100 {
		fs := cons.PollFetches(ctxFor(t, 15*time.Second))
		if err := fs.Err0(); err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != "reading "+strconv.Itoa(n) {
				t.Fatalf("record %d: %q", n, r.Value)
			}
			n++
		})
	}
}
