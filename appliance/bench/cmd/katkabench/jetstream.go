package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsVersion is the nats-server release compared against; it must accept
// sync_interval (always or a duration) in the jetstream block (2.10 and later).
const natsVersion = "v2.14.9"

// natsWindow is how many async publishes may wait for their ack at once.
const natsWindow = 4096

// natsConfig is a single nats-server with JetStream on file storage.
// sync_interval is "always" (every write opened O_SYNC: each acknowledged
// message is on disk) or a duration (fsync of all streams every interval).
const natsConfig = `listen: %s
http: %s
jetstream {
  store_dir: %q
  sync_interval: %s
}
`

// natsServer is a running nats-server.
type natsServer struct {
	*server
	url string
}

// ensureNATS installs nats-server natsVersion into e.bin (once) and returns
// its path. It is built from the Go module proxy with go install and is not a
// dependency of katka's go.mod.
func ensureNATS(e *env) (string, error) {
	dir := filepath.Join(e.bin, "nats-server-"+natsVersion)
	path := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Printf("installing nats-server %s into %s\n", natsVersion, dir)
	cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+natsVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	cmd.Dir = os.TempDir() // outside katka's module, so its go.mod is untouched
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install nats-server@%s: %w", natsVersion, err)
	}
	return path, nil
}

// startNATS starts nats-server on storeDir with sync ("always" or "1s") and
// waits for its /healthz.
func startNATS(e *env, storeDir, sync string) (*natsServer, error) {
	p, err := freePort()
	if err != nil {
		return nil, err
	}
	mp, err := freePort()
	if err != nil {
		return nil, err
	}
	addr, mon := fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", mp)
	cfgPath := storeDir + ".conf"
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, natsConfig, addr, mon, storeDir, sync), 0o644); err != nil {
		return nil, fmt.Errorf("write nats config: %w", err)
	}
	s, err := startProcess("nats-server", storeDir+".log", e.nats, "-c", cfgPath)
	if err != nil {
		return nil, err
	}
	if _, err := waitHTTP(s, "http://"+mon+"/healthz", 10*time.Millisecond, 60*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return &natsServer{server: s, url: "nats://" + addr}, nil
}

// natsStream is the stream every run uses, on subject bench.
const natsStream = "BENCH"

// natsProduce publishes up to n messages of size bytes with PublishAsync (at
// most natsWindow unacknowledged), stopping early after limit, and returns
// once every publish is acknowledged by the stream. A full window blocks the
// publisher (stall wait one minute) instead of failing it.
func natsProduce(ctx context.Context, url string, n int64, size int, limit time.Duration) (result, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return result{}, fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			if failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		}))
	if err != nil {
		return result{}, fmt.Errorf("jetstream: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: natsStream, Subjects: []string{"bench"},
		Storage: jetstream.FileStorage, Replicas: 1}); err != nil {
		return result{}, fmt.Errorf("create stream: %w", err)
	}
	value := payload(size)
	settle()
	start := time.Now()
	var sent int64
	for sent = 0; sent < n && ctx.Err() == nil; sent++ {
		if sent%1024 == 0 && time.Since(start) > limit {
			break
		}
		if _, err := js.PublishAsync("bench", value, jetstream.WithStallWait(time.Minute)); err != nil {
			return result{}, fmt.Errorf("publish async: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return result{}, errors.New("jetstream: acks missing after 5 minutes")
	}
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		return result{}, fmt.Errorf("jetstream publish: %d of %d failed: %v", f, sent, firstErr.Load())
	}
	return result{records: sent, elapsed: el}, nil
}

// natsConsume reads n messages from the start of the stream with an ordered
// consumer (ack none, flow-controlled pulls), the fastest way nats.go reads.
func natsConsume(ctx context.Context, url string, n int64) (result, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return result{}, fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return result{}, fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	settle()
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, natsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return result{}, fmt.Errorf("ordered consumer: %w", err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if got.Add(1) == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(natsWindow))
	if err != nil {
		return result{}, fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return result{}, fmt.Errorf("jetstream consume: %d of %d messages: %w", got.Load(), n, ctx.Err())
	}
	return result{records: n, elapsed: time.Since(start)}, nil
}
