package mqtt

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/katka-io/katka/sensors/internal/mosq"
)

// benchInflight is Mosquitto's max_inflight_messages in the benchmark (Mosquitto's
// default is 20); KATKA_BENCH_INFLIGHT overrides it.
func benchInflight() int {
	if n, err := strconv.Atoi(os.Getenv("KATKA_BENCH_INFLIGHT")); err == nil {
		return n
	}
	return 1000
}

// preload publishes n QoS 1 messages of 100 bytes to bench/<k> while the persistent
// session clientID is offline, so Mosquitto queues them all.
func preload(b *testing.B, url, clientID string, n int) {
	b.Helper()
	sess := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false))
	if tok := sess.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("session connect: %v", tok.Error())
	}
	if tok := sess.Subscribe("bench/+", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	sess.Disconnect(50)
	pub := publisher(b, url, clientID+"-pub")
	payload := bytes.Repeat([]byte("x"), 100)
	window := make(chan paho.Token, 1000)
	go func() {
		for i := range n {
			window <- pub.Publish(fmt.Sprintf("bench/k%d", i%16), 1, false, payload)
		}
		close(window)
	}()
	for tok := range window {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("publish: %v", tok.Error())
		}
	}
}

// BenchmarkDrain compares how fast QoS 1 messages of 100 bytes queued in Mosquitto
// are taken in by a plain paho subscriber that only counts them (and acks them
// automatically) and by katka's MQTT input (written with fsync before each ack).
// Both drain the same Mosquitto on the same machine; msgs/s is the figure.
func BenchmarkDrain(b *testing.B) {
	mq := mosq.Start(b, fmt.Sprintf("max_inflight_messages %d", benchInflight()))
	b.Run("paho-count", func(b *testing.B) {
		id := fmt.Sprintf("bench-paho-%d", b.N)
		preload(b, mq.URL, id, b.N)
		var n atomic.Int64
		done := make(chan struct{})
		opts := paho.NewClientOptions().AddBroker(mq.URL).SetClientID(id).SetCleanSession(false).
			SetDefaultPublishHandler(func(_ paho.Client, _ paho.Message) {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
			})
		c := paho.NewClient(opts)
		b.ResetTimer()
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect: %v", tok.Error())
		}
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		c.Disconnect(50)
	})
	// batch_wait 0 is how the input batched before the linger (whatever had
	// arrived); the default lingers up to 5ms after a batch's first message.
	for _, linger := range []time.Duration{0, DefaultConfig().BatchWait} {
		b.Run("katka/batch_wait="+linger.String(), func(b *testing.B) {
			id := fmt.Sprintf("bench-katka-%d-%s", b.N, linger)
			preload(b, mq.URL, id, b.N)
			br := openBroker(b)
			cfg := mqttConfig(mq.URL, id, ruleFor("bench/+", "bench", 4, 2))
			ConfigOf(cfg).BatchWait = linger
			b.ResetTimer()
			stop := runInputs(b, br, cfg)
			waitCount(b, br, "bench", int64(b.N), 5*time.Minute)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			stop()
		})
	}
}
