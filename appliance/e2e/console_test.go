package e2e

// The web console in headless Chromium (Debian's chromium, driven with
// chromedp) against the real katka binary: every page loads with no console
// error or uncaught exception, a topic created in the page exists over Kafka,
// a record produced with kcat shows in the message browser, a group's lag
// shows the right number, and an offset reset in the page moves the group.
// Screenshots of every page at 1280x800 and at a phone's 390x844 go to
// $KATKA_SCREENSHOTS, or to a temporary folder the test names.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/plugins/plugintest"
	"github.com/katka-io/katka/plugins/sdk"
)

// consoleMessages collects what the page writes to the console; the test
// fails on every error and uncaught exception.
type consoleMessages struct {
	mu   sync.Mutex
	errs []string
}

func (c *consoleMessages) add(s string) {
	c.mu.Lock()
	c.errs = append(c.errs, s)
	c.mu.Unlock()
}

func (c *consoleMessages) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// startChromium starts headless chromium with the flags known to work on
// these machines and returns a tab whose console is watched.
func startChromium(t *testing.T) (context.Context, *consoleMessages) {
	t.Helper()
	bin := requireTool(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, no timeout
		t.Fatalf("start chromium: %v", err)
	}
	msgs := &consoleMessages{}
	stream := chromedp.Console(ctx)
	go func() {
		for m, err := range stream {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				msgs.add(fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			}
		}
	}()
	return ctx, msgs
}

// screenshotDir is $KATKA_SCREENSHOTS (created) or a temporary folder.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KATKA_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConsole(t *testing.T) {
	t0 := time.Now()
	kcat := kcatBinary(t)
	central, _ := syncCentral(t)
	mqttURL := startMosquitto(t, "")
	// A signed firmware artefact waits on the central cluster; the edge's
	// downlink brings it down.
	keys := keygen(t)
	fwFile := filepath.Join(t.TempDir(), "plc-fw-2.1.0.bin")
	if err := os.WriteFile(fwFile, []byte(strings.Repeat("firmware image ", 40000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(requireBinary(t), "firmware", "publish", fwFile, "--name", "plc-fw", "--version", "2.1.0", "--hardware", "s7-1500",
		"--key", filepath.Join(keys, "targets.key"), "--root", filepath.Join(keys, "root.json"), "--brokers", central.ListenAddrs()[0]).CombinedOutput(); err != nil {
		t.Fatalf("katka firmware publish: %v\n%s", err, out)
	}
	// A processor plugin averages the simulated readings.
	plugins := t.TempDir()
	plugintest.Build(t, plugins, "./plugins/examples/windowavg", "window-avg", sdk.KindProcessor)
	k := startKafkaKatkaWith(t, fmt.Sprintf(`storage:
  quota: 4MiB
sensors:
  simulated:
    enabled: true
    interval: 250ms
  mqtt:
    enabled: true
    qos: 1
    brokers:
      - name: plant
        url: %s
        client_id: katka-console-test
    rules:
      - filter: line/+/temp
        topic: plant.temperatures
        key_level: 2
        format: json
sync:
  enabled: true
  site: plant-7
  brokers: [%s]
  backoff_min: 50ms
  backoff_max: 1s
  uplink:
    - topic: sensors.simulated
  downlink:
    - central_topic: firmware.manifests
    - central_topic: firmware.chunks
firmware:
  enabled: true
  root_file: %s
  quota: 64MiB
plugins:
  dir: %s
  instances:
    - name: sensor-avg
      plugin: window-avg
      inputs: [sensors.simulated]
      output: sensors.avg
      settings: ["window=1s", "grace=1s", "field=value"]
`, mqttURL, central.ListenAddrs()[0], filepath.Join(keys, "root.json"), plugins))
	t.Logf("console: setup (central, Mosquitto, firmware published, plugin built, katka started) took %v", time.Since(t0).Round(time.Millisecond))
	ctx, console := startChromium(t)
	shots := screenshotDir(t)
	base := "http://" + k.HTTPAddr + "/"
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v (console errors: %q)", what, err, console.list())
		}
	}
	// waitJS waits until a JavaScript expression is true in the page.
	waitJS := func(what, expr string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(sctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("waiting for %s: %v\nconsole errors: %q\npage: %.3000s", what, err, console.list(), html)
		}
	}
	shoot := func(name string) {
		t.Helper()
		// The last action's notice would cover the data.
		chromedp.Run(ctx, chromedp.Evaluate[any](`document.getElementById('notice').hidden = true`))
		for _, vp := range []struct {
			suffix string
			w, h   int64
			mobile bool
		}{{"", 1280, 800, false}, {"-phone", 390, 844, true}} {
			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			opts := []chromedp.EmulateViewportOption{}
			if vp.mobile {
				opts = append(opts, chromedp.EmulateMobile)
			}
			if err := chromedp.Do(sctx, chromedp.EmulateViewport(vp.w, vp.h, opts...)); err != nil {
				cancel()
				t.Fatal(err)
			}
			// The page redraws its charts at the new width.
			if _, err := chromedp.Run(sctx, chromedp.Poll[bool](`[...document.querySelectorAll('svg.chart')].every(s =>
				Math.abs(Number(s.getAttribute('width')) - s.parentElement.clientWidth) < 2)`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
				cancel()
				t.Fatalf("charts of %s at %dx%d: %v", name, vp.w, vp.h, err)
			}
			png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
			cancel()
			if err != nil {
				t.Fatalf("screenshot %s: %v", name, err)
			}
			if err := os.WriteFile(filepath.Join(shots, name+vp.suffix+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		step("back to desktop size", chromedp.EmulateViewport(1280, 800))
	}

	// Topics: create one in the page, then find it over Kafka.
	step("open topics", chromedp.Navigate(base+"#/topics"))
	waitJS("the topics table", `!!document.querySelector('tr[data-topic="sensors.simulated"]')`)
	step("create topic orders",
		chromedp.SendKeys(chromedp.CSS("#new-topic-name"), "orders"),
		chromedp.SetValue(chromedp.CSS("#new-topic-partitions"), "3"),
		chromedp.Click(chromedp.CSS("#create-topic-button")))
	waitJS("orders in the table", `!!document.querySelector('tr[data-topic="orders"]')`)
	adm := kadm.NewClient(k.client(t))
	td, err := adm.ListTopics(kafkaCtx(t, 10*time.Second), "orders")
	if err != nil || td["orders"].Err != nil || len(td["orders"].Partitions) != 3 {
		t.Fatalf("topic orders created in the console, over Kafka: %v %+v", err, td["orders"])
	}

	// kcat produces JSON records with keys and a header into partition 0.
	var in strings.Builder
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&in, "order-%d|{\"order\":%d,\"item\":\"valve-%d\",\"qty\":%d}\n", i, i, i, i*3)
	}
	cmd := exec.Command(kcat, "-P", "-b", k.KafkaAddr, "-t", "orders", "-p", "0", "-K", "|", "-H", "source=kcat-console-test")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	waitJS("the topic's 5 records", `[...document.querySelectorAll('tr[data-topic="orders"] td')].some(td => td.textContent === '5 0 0')`)
	shoot("topics")

	// The topic page: partitions and configs; set retention.ms in the page.
	step("open topic orders", chromedp.Navigate(base+"#/topics/orders"))
	waitJS("the partitions", `document.body.textContent.includes('retention.ms')`)
	step("alter retention.ms",
		chromedp.SendKeys(chromedp.CSS("#config-name"), "retention.ms"),
		chromedp.SendKeys(chromedp.CSS("#config-value"), "3600000"),
		chromedp.Click(chromedp.CSS("#alter-config button")))
	waitJS("retention.ms set", `[...document.querySelectorAll('tr.set td')].some(td => td.textContent === '3600000')`)
	cfg, err := adm.DescribeTopicConfigs(kafkaCtx(t, 10*time.Second), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfg.On("orders", nil); err != nil || !slices.ContainsFunc(v.Configs, func(c kadm.Config) bool { return c.Key == "retention.ms" && c.MaybeValue() == "3600000" }) {
		t.Fatalf("retention.ms set in the console, over Kafka: %v %+v", err, v)
	}
	shoot("topic")

	// The message browser shows kcat's record: key, pretty JSON, header.
	step("open messages", chromedp.Navigate(base+"#/messages?topic=orders"))
	waitJS("kcat's records", `[...document.querySelectorAll('article.message')].some(a =>
		a.querySelector('.key').textContent === 'order-5' &&
		a.querySelector('pre.value.json').textContent.includes('\n  "item": "valve-5"') &&
		a.textContent.includes('source: kcat-console-test'))`)
	shoot("messages")
	step("filter", chromedp.SendKeys(chromedp.CSS("#msg-filter"), "valve-2\n"))
	waitJS("only the filtered record", `document.querySelectorAll('article.message').length === 1 &&
		document.querySelector('article.message .key').textContent === 'order-2'`)
	shoot("messages-filter")

	// A group reads 2 of the 5 records and commits: the page shows lag 3.
	cl := k.client(t, kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("billing-app"))
	var got []*kgo.Record
	pctx := kafkaCtx(t, 20*time.Second)
	for len(got) < 2 && pctx.Err() == nil {
		got = append(got, cl.PollRecords(pctx, 2-len(got)).Records()...)
	}
	if len(got) < 2 {
		t.Fatalf("group billing read %d records", len(got))
	}
	if err := cl.CommitRecords(pctx, got[:2]...); err != nil {
		t.Fatalf("commit: %v", err)
	}
	step("open groups", chromedp.Navigate(base+"#/groups"))
	waitJS("group billing with lag 3", `(() => { const d = document.querySelector('details[data-group="billing"]');
		return d && d.querySelector('summary .lag').textContent === '3' && d.textContent.includes('billing-app'); })()`)
	step("expand billing", chromedp.Click(chromedp.CSS(`details[data-group="billing"] summary`)))
	shoot("groups")
	cl.Close() // leaves the group: an offset reset needs it empty
	waitJS("billing empty", `document.querySelector('details[data-group="billing"] summary').textContent.includes('Empty')`)
	step("reset billing to earliest", chromedp.Click(chromedp.CSS(`details[data-group="billing"] form.reset button`)))
	waitJS("group billing with lag 5", `document.querySelector('details[data-group="billing"] summary .lag').textContent === '5'`)
	offs, err := adm.FetchOffsets(kafkaCtx(t, 10*time.Second), "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("orders", 0); !ok || o.At != 0 {
		t.Fatalf("billing's offset of orders/0 after the reset in the console: %+v %v", o, ok)
	}

	// Overview with its charts, inputs and sync with real data.
	step("open overview", chromedp.Navigate(base+"#/overview"))
	waitJS("the overview", `Number(document.querySelector('#card-topics .value')?.textContent) >= 3 &&
		document.querySelectorAll('#chart-records path.series').length === 2`)
	// Two more samples so the charts have a line to show.
	waitJS("chart points", `document.querySelector('#chart-records path.series').getAttribute('d').split('L').length >= 4`)
	shoot("overview")
	// MQTT messages arrive through the MQTT input: the inputs page shows the
	// connection and its counters.
	pub := mqttConnect(t, paho.NewClientOptions().AddBroker(mqttURL).SetClientID("console-test-pub"))
	for i := range 6 {
		if tok := pub.Publish(fmt.Sprintf("line/%d/temp", i%3+1), 1, false, fmt.Sprintf(`{"celsius":%d.5}`, 20+i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("mqtt publish: %v", tok.Error())
		}
	}
	pub.Disconnect(0)
	step("open inputs", chromedp.Navigate(base+"#/inputs"))
	waitJS("the inputs and their counters", `(() => { const t = document.querySelector('main').textContent;
		return t.includes('sensors.simulated') && t.includes('line/+/temp -> plant.temperatures') &&
			[...document.querySelectorAll('tr')].some(tr => tr.textContent.startsWith('katka_mqtt_messages_in_total') && tr.textContent.endsWith('6')); })()`)
	shoot("inputs")
	step("open sync", chromedp.Navigate(base+"#/sync"))
	waitJS("the uplink and the downlink", `(() => { const t = document.querySelector('#status-sync')?.textContent || '';
		return t.includes('sensors.simulated') && t.includes('firmware.chunks'); })()`)
	shoot("sync")
	step("open plugins", chromedp.Navigate(base+"#/plugins"))
	waitJS("the plugin instance", `(() => { const t = document.querySelector('#status-plugins')?.textContent || '';
		return t.includes('sensor-avg') && t.includes('window-avg'); })()`)
	shoot("plugins")
	step("open firmware", chromedp.Navigate(base+"#/firmware"))
	waitJS("the artefact", `(() => { const t = document.querySelector('#status-firmware')?.textContent || '';
		return t.includes('plc-fw') && t.includes('2.1.0'); })()`)
	shoot("firmware")

	// A second katka, the one node of a cell, with HTTP tokens: the page asks
	// for a token before it calls the API, the overview names the cell and
	// the cell page shows the controller.
	cellDir := t.TempDir()
	cellCLI(t, "cell", "init", "--name", "plant7", "--out", filepath.Join(cellDir, "ca"))
	cellCLI(t, "cell", "issue", "--ca", filepath.Join(cellDir, "ca"), "--out", filepath.Join(cellDir, "n1"))
	peer, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ck := startKafkaKatkaWith(t, fmt.Sprintf(`sensors:
  simulated:
    enabled: true
cell:
  name: plant7
  credential_dir: %s
  peer_addr: 127.0.0.1:%d
  mdns: false
  seeds: [127.0.0.1:%d]
  bootstrap_expect: 1
http:
  tokens:
    - {name: viewer, sha256: %x, role: read}
`, filepath.Join(cellDir, "n1"), peer, peer, sha256.Sum256([]byte("katka-viewer-secret"))))
	step("open the cell node's overview", chromedp.Navigate("http://"+ck.HTTPAddr+"/#/overview"))
	waitJS("the token dialog", `document.getElementById('token-dialog').open`)
	step("enter the read token",
		chromedp.SendKeys(chromedp.CSS("#token-input"), "katka-viewer-secret"),
		chromedp.Click(chromedp.CSS(`#token-form button[value="save"]`)))
	waitJS("the cell in the overview", `document.querySelector('#card-node .value')?.textContent.startsWith('cell plant7')`)
	step("open cell", chromedp.Navigate("http://"+ck.HTTPAddr+"/#/cell"))
	waitJS("the controller", `(() => { const t = document.querySelector('#status-cell')?.textContent || '';
		return t.includes('plant7') && t.includes('Leader'); })()`)
	shoot("cell")

	// A katka without the Kafka listener has no group coordinator: the
	// Groups page is not offered, and opening it asks for nothing.
	nk := NewKatka(t, t.TempDir(), testConfig)
	if err := nk.Start(); err != nil {
		t.Fatal(err)
	}
	step("open a katka without Kafka", chromedp.Navigate(nk.URL("/#/groups")))
	waitJS("no groups without Kafka", `document.querySelector('#groups')?.textContent.includes('Kafka listener, which is off') &&
		![...document.querySelectorAll('#nav a')].some(a => a.textContent === 'Groups')`)

	if errs := console.list(); len(errs) > 0 {
		t.Fatalf("console errors: %q", errs)
	}
	t.Logf("console: 10 pages checked in Chromium in %v, screenshots in %s", time.Since(t0).Round(time.Millisecond), shots)
}
