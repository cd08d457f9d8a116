package opcua

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// TestServerRestartResubscribes kills the OPC UA server process (node-opcua,
// SIGKILL: its connections reset, its sessions and subscriptions are gone)
// and starts it again on the same port: the input comes back by itself over
// its secured session, the changes made after the restart arrive, and the
// log says once that the link was lost and once that it is back.
func TestServerRestartResubscribes(t *testing.T) {
	t.Parallel()
	katka := newPKI(t, "katka")
	us := startUAServer(t, uaOptions{variables: uaVariables, users: map[string]string{"katka": "s3cret"}, trustClients: []pki{katka}})
	name := fmt.Sprintf("restart-%d", time.Now().UnixNano())
	var logs lockedBuffer
	b := openBroker(t)
	cfg := testConfig(ServerConfig{Name: name, Endpoint: us.endpoint(), SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		Auth: "username", Username: "katka", Password: "s3cret", CertFile: katka.certFile, KeyFile: katka.keyFile,
		PublishInterval: 50 * time.Millisecond, Nodes: uaNodes(uaVariables)})
	runInputs(t, b, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	waitSubscribed(t, name, 1)
	us.set(1)
	waitValue(t, b, ConfigOf(cfg).Topic, 1)

	killed := time.Now()
	us.restart()
	ready := time.Now()
	// Without help the input notices, reconnects and subscribes again: the
	// changes made on the new server arrive.
	k := 100
	for deadline := time.Now().Add(60 * time.Second); !lastValues(t, b, ConfigOf(cfg).Topic, float64(k)); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no change arrived within 60 s of the restart; log:\n%s", logs.String())
		}
		k++
		us.set(k)
	}
	t.Logf("values flow again %v after the server was ready (it took %v to start; %v after the kill): %v restores by the client, %v subscriptions by katka",
		time.Since(ready).Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond),
		testutil.ToFloat64(reconnects.WithLabelValues(name)), testutil.ToFloat64(subscribes.WithLabelValues(name)))
	lost, back := logs.lines("OPC UA link lost"), logs.lines("OPC UA link back")
	if len(lost) != 1 || len(back) != 1 || len(logs.lines("level=WARN"))+len(logs.lines("level=ERROR")) != 1 {
		t.Fatalf("want one line for the lost link and one for its return, nothing per retry; log:\n%s", logs.String())
	}
	t.Logf("log: %s", lost[0])
	t.Logf("log: %s", back[0])
}

// TestServerLateOneLine starts the input before its server: the refused
// connections give one log line however often katka retries, and when the
// server is up the input subscribes by itself and says so once.
func TestServerLateOneLine(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	name := fmt.Sprintf("late-%d", time.Now().UnixNano())
	var logs lockedBuffer
	b := openBroker(t)
	cfg := testConfig(ServerConfig{Name: name, Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), SecurityPolicy: "None", SecurityMode: "None",
		Auth: "anonymous", PublishInterval: 50 * time.Millisecond, Nodes: uaNodes(uaVariables)})
	stop := runInputs(t, b, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	refused := errorsTotal.WithLabelValues(name, errConnect)
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(refused) < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v connect errors within 30 s, want 4; log:\n%s", testutil.ToFloat64(refused), logs.String())
		}
	}
	us := startUAServer(t, uaOptions{port: port, variables: uaVariables, anonymous: true})
	// The input stops before the server does (cleanups run last first): a
	// client closed in the middle of gopcua's own reconnection races with it.
	t.Cleanup(stop)
	waitSubscribed(t, name, 1)
	us.set(1)
	waitValue(t, b, ConfigOf(cfg).Topic, 1)
	failed, up := logs.lines("OPC UA connection failed"), logs.lines("OPC UA link up: subscribed")
	if len(failed) != 1 || len(up) != 1 || strings.Count(logs.String(), "\n") != 2 {
		t.Fatalf("after %v refused connections, want one line for them and one when subscribed; log:\n%s", testutil.ToFloat64(refused), logs.String())
	}
	t.Logf("%v refused connections; log: %s", testutil.ToFloat64(refused), failed[0])
	t.Logf("log: %s", up[0])
}

// TestLinkCut30s cuts the link for 30 s (no reset, nothing arrives either
// way, as with a pulled cable): the input notices (its health reads go
// unanswered), and when the link is back the changes arrive again without
// help; the log says once that the link was lost and once that it is back.
func TestLinkCut30s(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over 30 s")
	}
	t.Parallel() // the tests with a node-opcua server mostly wait: side by side
	us, px, b, cfg, name, logs := proxiedInput(t, "cut")

	px.hole(true)
	k := 10
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		k++
		us.set(k) // changes the link swallows; the server queues the last queue_size of each node
	}
	healed := k
	px.hole(false)
	back := time.Now()
	// The first value to arrive is one the server queued during the cut; no
	// new change is made before it, so none pushes it out of the queue.
	waitValue(t, b, ConfigOf(cfg).Topic, float64(healed))
	resumed := time.Since(back)
	us.set(healed + 1)
	waitValue(t, b, ConfigOf(cfg).Topic, float64(healed+1))
	t.Logf("changes arrive again %v after the link returned (%v errors of kind connect, %v subscriptions by katka)", resumed.Round(time.Millisecond),
		testutil.ToFloat64(errorsTotal.WithLabelValues(name, errConnect)), testutil.ToFloat64(subscribes.WithLabelValues(name)))
	lost, up := logs.lines("OPC UA link lost"), logs.lines("OPC UA link back")
	if len(lost) != 1 || len(up) != 1 || len(logs.lines("level=WARN"))+len(logs.lines("level=ERROR")) != 1 {
		t.Fatalf("want one line for the lost link and one for its return, nothing per retry; log:\n%s", logs.String())
	}
	t.Logf("log: %s", lost[0])
	t.Logf("log: %s", up[0])
	// The same session carried on: what the server queued during the cut
	// (the last queue_size changes of each node) arrived.
	got := map[string]map[float64]bool{}
	for _, c := range readTopic(t, b, ConfigOf(cfg).Topic) {
		if got[c.Name] == nil {
			got[c.Name] = map[float64]bool{}
		}
		got[c.Name][c.Value] = true
	}
	for i := range uaVariables {
		for v := healed - uaNodes(1)[0].QueueSize + 1; v <= healed; v++ {
			if !got[fmt.Sprintf("v%d", i)][float64(v)] {
				var seen []float64
				for x := float64(healed - 30); x <= float64(healed+5); x++ {
					if got[fmt.Sprintf("v%d", i)][x] {
						seen = append(seen, x)
					}
				}
				t.Fatalf("node v%d: value %d, queued by the server during the cut, is missing; values %d..%d seen: %v", i, v, healed-30, healed+5, seen)
			}
		}
	}
}

// TestDeadConnectionConnectsAnew leaves katka's connection silent for ever
// while the server answers new connections (a middlebox that dropped the
// connection's state): katka sees the server answer, gives the old
// connection staleAfterProbe, then connects anew and the changes arrive.
func TestDeadConnectionConnectsAnew(t *testing.T) {
	t.Parallel()
	us, px, b, cfg, name, logs := proxiedInput(t, "dead")

	px.freeze()
	frozen := time.Now()
	k := 100
	us.set(k)
	for deadline := time.Now().Add(60 * time.Second); !lastValues(t, b, ConfigOf(cfg).Topic, float64(k)); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no change arrived within 60 s; log:\n%s", logs.String())
		}
		k++
		us.set(k)
	}
	t.Logf("changes arrive again %v after the connection went silent, on a new session (%v subscriptions by katka)",
		time.Since(frozen).Round(time.Millisecond), testutil.ToFloat64(subscribes.WithLabelValues(name)))
	if lost, up := logs.lines("OPC UA link lost"), logs.lines("OPC UA link back"); len(lost) != 1 || len(up) != 1 || testutil.ToFloat64(subscribes.WithLabelValues(name)) != 2 {
		t.Fatalf("want one line for the lost link, one for its return and a second subscription; log:\n%s", logs.String())
	}
}

// proxiedInput starts a node-opcua server behind a proxy and an input
// subscribed through the proxy to its variables, whose value 1 has arrived.
func proxiedInput(t *testing.T, prefix string) (*uaServer, *proxy, *broker.Broker, config.Sensors, string, *lockedBuffer) {
	t.Helper()
	us := startUAServer(t, uaOptions{variables: uaVariables, anonymous: true})
	front := freePort(t)
	px := newProxy(t, front, us.cfg.Port)
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	logs := &lockedBuffer{}
	b := openBroker(t)
	cfg := testConfig(ServerConfig{Name: name, Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", front), SecurityPolicy: "None", SecurityMode: "None",
		Auth: "anonymous", PublishInterval: 50 * time.Millisecond, Nodes: uaNodes(uaVariables)})
	runInputs(t, b, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	waitSubscribed(t, name, 1)
	us.set(1)
	waitValue(t, b, ConfigOf(cfg).Topic, 1)
	return us, px, b, cfg, name, logs
}
