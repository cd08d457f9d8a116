package kafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestSarama: IBM/sarama's sync producer, partition consumer and cluster
// admin, at its default protocol version and at a recent one.
func TestSarama(t *testing.T) {
	e := newEnv(t)
	for _, v := range []sarama.KafkaVersion{sarama.DefaultVersion, sarama.V3_6_0_0} {
		t.Run(v.String(), func(t *testing.T) {
			cfg := sarama.NewConfig()
			cfg.Version = v
			cfg.Producer.Return.Successes = true
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Compression = sarama.CompressionSnappy
			cfg.Producer.Partitioner = sarama.NewHashPartitioner
			cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
			cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
			topic := "sarama-" + v.String()

			adm, err := sarama.NewClusterAdmin([]string{e.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer adm.Close()
			// ListTopics lists the configs set on the topic (not the defaults), as from Kafka.
			policy := "delete"
			if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: map[string]*string{"cleanup.policy": &policy}}, false); err != nil {
				t.Fatal(err)
			}
			if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err == nil {
				t.Fatal("creating an existing topic did not fail")
			}
			topics, err := adm.ListTopics()
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := topics[topic]; !ok || d.NumPartitions != 3 || d.ConfigEntries["cleanup.policy"] == nil || *d.ConfigEntries["cleanup.policy"] != "delete" || d.ConfigEntries["retention.ms"] != nil {
				t.Fatalf("ListTopics: %+v", topics)
			}

			prod, err := sarama.NewSyncProducer([]string{e.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			const n = 300
			var msgs []*sarama.ProducerMessage
			for i := 0; i < n; i++ {
				msgs = append(msgs, &sarama.ProducerMessage{
					Topic:   topic,
					Key:     sarama.StringEncoder(fmt.Sprint("k", i)),
					Value:   sarama.StringEncoder(fmt.Sprint("v", i)),
					Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(fmt.Sprint(i))}},
				})
			}
			if err := prod.SendMessages(msgs[:n-1]); err != nil {
				t.Fatal(err)
			}
			if _, _, err := prod.SendMessage(msgs[n-1]); err != nil {
				t.Fatal(err)
			}
			prod.Close()

			cons, err := sarama.NewConsumer([]string{e.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			got := 0
			for p := int32(0); p < 3; p++ {
				pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
				if err != nil {
					t.Fatal(err)
				}
				want := map[int64]*sarama.ProducerMessage{}
				for _, m := range msgs {
					if m.Partition == p {
						want[m.Offset] = m
					}
				}
				for len(want) > 0 {
					select {
					case m := <-pc.Messages():
						w := want[m.Offset]
						if w == nil {
							// Tell a duplicate (a retried send) from a shifted
							// offset: which message the record is, and where the
							// producer was told it went.
							at := "not sent"
							for _, s := range msgs {
								if k, _ := s.Key.Encode(); string(k) == string(m.Key) {
									at = fmt.Sprintf("reported at partition %d offset %d", s.Partition, s.Offset)
								}
							}
							t.Fatalf("unexpected offset %d on partition %d: key %q value %q (%s); %d reported offsets of the partition not yet consumed", m.Offset, p, m.Key, m.Value, at, len(want))
						}
						wk, _ := w.Key.Encode()
						wv, _ := w.Value.Encode()
						if string(m.Key) != string(wk) || string(m.Value) != string(wv) || len(m.Headers) != 1 || string(m.Headers[0].Value) != string(w.Headers[0].Value) {
							t.Fatalf("partition %d offset %d: %q=%q, want %q=%q", p, m.Offset, m.Key, m.Value, wk, wv)
						}
						delete(want, m.Offset)
						got++
					case err := <-pc.Errors():
						t.Fatal(err)
					case <-time.After(10 * time.Second):
						t.Fatalf("partition %d: %d records missing", p, len(want))
					}
				}
				pc.Close()
			}
			if got != n {
				t.Fatalf("consumed %d, want %d", got, n)
			}
			if err := adm.DeleteTopic(topic); err != nil {
				t.Fatal(err)
			}
			if _, err := e.b.Topic(topic); err == nil {
				t.Fatal("topic still exists after DeleteTopic")
			}
		})
	}
}
