package opcua

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServerRestartResubscribes restarts the OPC UA server: the input comes
// back by itself, subscribes again and the changes made after the restart arrive.
func TestServerRestartResubscribes(t *testing.T) {
	const nodes = 50
	name := fmt.Sprintf("restart-%d", time.Now().UnixNano())
	port, front := freePort(t), freePort(t)
	ts := startServer(t, port, nodes, nil)
	px := newProxy(t, front, port) // a restarting server process closes its connections; gopcua's Close does not
	b := openBroker(t)
	cfg := testConfig(ServerConfig{Name: name, Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", front), SecurityPolicy: "None", SecurityMode: "None",
		Auth: "anonymous", PublishInterval: 50 * time.Millisecond, Nodes: nodeConfigs(ts.ns.ID(), nodes)})
	runInputs(t, b, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	waitSubscribed(t, name, 1)
	drive(ts, 1, 3)
	waitValue(t, b, ConfigOf(cfg).Topic, 3)

	// The restart: the old process's connections die with it, the new one
	// listens (on another port behind the proxy, as gopcua's Close lingers).
	restart := time.Now()
	go ts.srv.Close()
	ts.port = freePort(t)
	ts.opts[0] = server.EndPoint("127.0.0.1", ts.port)
	ts.start(t, nodes)
	px.retarget(ts.port)
	px.reset()
	// Without help the input notices, reconnects and subscribes again: the
	// changes made on the new server arrive.
	for k, deadline := 100, time.Now().Add(60*time.Second); ; k++ {
		drive(ts, k, 1)
		if lastValues(t, b, ConfigOf(cfg).Topic, float64(k)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no change arrived within 60 s of the restart")
		}
	}
	t.Logf("back %v after the restart: %v reconnects by the client, %v subscriptions by katka",
		time.Since(restart).Round(time.Millisecond), testutil.ToFloat64(reconnects.WithLabelValues(name)), testutil.ToFloat64(subscribes.WithLabelValues(name)))
}

// TestLinkCut30s cuts the link for 30 s (no reset, nothing arrives either
// way, as with a pulled cable): the input notices (its health reads go
// unanswered), and when the link is back the changes arrive again without help.
func TestLinkCut30s(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over 30 s")
	}
	const nodes = 20
	name := fmt.Sprintf("cut-%d", time.Now().UnixNano())
	port, front := freePort(t), freePort(t)
	ts := startServer(t, port, nodes, nil)
	px := newProxy(t, front, port)
	b := openBroker(t)
	cfg := testConfig(ServerConfig{Name: name, Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", front), SecurityPolicy: "None", SecurityMode: "None",
		Auth: "anonymous", PublishInterval: 50 * time.Millisecond, Nodes: nodeConfigs(ts.ns.ID(), nodes)})
	runInputs(t, b, cfg, nil)
	waitSubscribed(t, name, 1)
	drive(ts, 1, 2)
	waitValue(t, b, ConfigOf(cfg).Topic, 2)

	px.hole(true)
	drive(ts, 10, 300) // 30 s of changes the link swallows
	px.hole(false)
	back := time.Now()
	for k, deadline := 1000, time.Now().Add(60*time.Second); ; k++ {
		drive(ts, k, 1)
		if lastValues(t, b, ConfigOf(cfg).Topic, float64(k)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no change arrived within 60 s of the link's return")
		}
	}
	t.Logf("changes arrive again %v after the link returned (%v errors of kind connect)", time.Since(back).Round(time.Millisecond),
		testutil.ToFloat64(errorsTotal.WithLabelValues(name, errConnect)))
}
