package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// kcatProps writes a librdkafka properties file (so no password is on a
// command line) and returns its path.
func kcatProps(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runKcat runs kcat with stdin and returns its stdout, stderr and error.
func runKcat(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestAuthKcat: kcat (librdkafka 2.0) produces and consumes over SASL_SSL
// with SCRAM-SHA-512 and over mutual TLS with a client certificate; a wrong
// password, an unknown user, a certificate of an untrusted CA and plaintext
// against the TLS port each end kcat with librdkafka's error for it, and
// nothing is written.
func TestAuthKcat(t *testing.T) {
	kcatBinary(t)
	a := startAuthKatka(t)
	scramProps := func(user, pw string) string {
		return kcatProps(t, "security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512",
			"sasl.username="+user, "sasl.password="+pw, "ssl.ca.location="+a.PKI.CA)
	}
	mtlsProps := func(cert, key string) string {
		return kcatProps(t, "security.protocol=SSL", "ssl.ca.location="+a.PKI.CA,
			"ssl.certificate.location="+cert, "ssl.key.location="+key)
	}
	roundTrip := func(t *testing.T, addr, props, topic string) {
		in := "k1:v1\nk2:v2\nk3:v3\n"
		if _, stderr, err := runKcat(t, in, "-F", props, "-b", addr, "-P", "-t", topic, "-K:"); err != nil {
			t.Fatalf("kcat produce: %v\n%s", err, stderr)
		}
		out, stderr, err := runKcat(t, "", "-F", props, "-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k:%s\n")
		if err != nil {
			t.Fatalf("kcat consume: %v\n%s", err, stderr)
		}
		if out != in {
			t.Fatalf("consumed %q, want %q", out, in)
		}
	}
	t.Run("SASL_SSL SCRAM-SHA-512", func(t *testing.T) { roundTrip(t, a.SASLSSL, scramProps("alice", "alice-secret"), "auth.kcat.scram") })
	t.Run("mTLS", func(t *testing.T) {
		roundTrip(t, a.MTLS, mtlsProps(a.PKI.ClientCert, a.PKI.ClientKey), "auth.kcat.mtls")
	})

	const denied = "auth.kcat.denied"
	fail := func(t *testing.T, addr, props, want string) {
		args := []string{"-b", addr, "-P", "-t", denied}
		if props != "" {
			args = append([]string{"-F", props}, args...)
		}
		_, stderr, err := runKcat(t, "must-not-be-written\n", args...)
		if err == nil {
			t.Fatalf("kcat produce succeeded:\n%s", stderr)
		}
		if !strings.Contains(stderr, want) {
			t.Fatalf("kcat stderr lacks %q:\n%s", want, stderr)
		}
	}
	const badLogin = "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
	t.Run("wrong password", func(t *testing.T) { fail(t, a.SASLSSL, scramProps("alice", "wrong"), badLogin) })
	t.Run("unknown user", func(t *testing.T) { fail(t, a.SASLSSL, scramProps("eve", "alice-secret"), badLogin) })
	t.Run("untrusted client certificate", func(t *testing.T) {
		fail(t, a.MTLS, mtlsProps(a.PKI.RogueCert, a.PKI.RogueKey), "alert unknown ca")
	})
	t.Run("plaintext against the TLS port", func(t *testing.T) {
		fail(t, a.SASLSSL, "", "Disconnected while requesting ApiVersion")
	})
	if end := a.topicEnd(t, denied); end != -1 {
		t.Fatalf("topic %s exists after failed logins (end offset %d)", denied, end)
	}
}

// xdgSCRAM is sarama's SCRAMClient on xdg-go/scram, as sarama's example.
type xdgSCRAM struct {
	hg   scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (x *xdgSCRAM) Begin(user, pass, authz string) error {
	c, err := x.hg.NewClient(user, pass, authz)
	if err != nil {
		return err
	}
	x.conv = c.NewConversation()
	return nil
}
func (x *xdgSCRAM) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *xdgSCRAM) Done() bool                            { return x.conv.Done() }

// TestAuthSarama: sarama logs in with SCRAM-SHA-512 over SASL_SSL, with
// SaslHandshake v1 (SaslAuthenticate requests) and v0 (bare token frames),
// produces and consumes; a wrong password fails with sarama's
// ErrSASLAuthenticationFailed (v1) or a closed connection (v0, as Kafka).
func TestAuthSarama(t *testing.T) {
	a := startAuthKatka(t)
	newCfg := func(pw string, v int16) *sarama.Config {
		cfg := sarama.NewConfig()
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = a.PKI.clientTLS(t, "", "")
		cfg.Net.SASL.Enable = true
		cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		cfg.Net.SASL.User, cfg.Net.SASL.Password = "alice", pw
		cfg.Net.SASL.Version = v
		if v == sarama.SASLHandshakeV0 {
			cfg.ApiVersionsRequest = false
		}
		cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAM{hg: scram.SHA512} }
		cfg.Producer.Return.Successes = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Metadata.Retry.Max = 1
		cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
		return cfg
	}
	for _, v := range []int16{sarama.SASLHandshakeV1, sarama.SASLHandshakeV0} {
		t.Run(fmt.Sprintf("handshake v%d", v), func(t *testing.T) {
			topic := fmt.Sprintf("auth.sarama.v%d", v)
			cfg := newCfg("alice-secret", v)
			prod, err := sarama.NewSyncProducer([]string{a.SASLSSL}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			for i := range 10 {
				if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil {
					t.Fatal(err)
				}
			}
			cons, err := sarama.NewConsumer([]string{a.SASLSSL}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			for i := range 10 {
				select {
				case m := <-pc.Messages():
					if string(m.Value) != fmt.Sprint(i) {
						t.Fatalf("message %d is %q", i, m.Value)
					}
				case err := <-pc.Errors():
					t.Fatal(err)
				case <-time.After(20 * time.Second):
					t.Fatalf("message %d not consumed", i)
				}
			}

			_, err = sarama.NewSyncProducer([]string{a.SASLSSL}, newCfg("wrong", v))
			if err == nil {
				t.Fatal("wrong password accepted")
			}
			t.Logf("sarama error: %v", err)
			if v == sarama.SASLHandshakeV1 && !errors.Is(err, sarama.ErrSASLAuthenticationFailed) {
				t.Fatalf("want ErrSASLAuthenticationFailed, got %v", err)
			}
		})
	}
}

// pythonConfluent finds Debian's python3 with confluent_kafka; without it
// the test is skipped, unless CI=true.
func pythonConfluent(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import confluent_kafka").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3-confluent-kafka not installed (apt-get install -y python3-confluent-kafka) and CI=true")
	}
	t.Skip("python3-confluent-kafka not installed (apt-get install -y python3-confluent-kafka)")
	return ""
}

// confluentScript produces argv[3..] to a topic over SASL_SSL SCRAM-SHA-256
// and consumes them back, printing one JSON line: the values read, or the
// errors the client reported.
const confluentScript = `
import json, sys
from confluent_kafka import Producer, Consumer
addr, ca, user, pw, topic = sys.argv[1:6]
conf = {"bootstrap.servers": addr, "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": user, "sasl.password": pw, "ssl.ca.location": ca}
errors = []
def on_error(e): errors.append(e.str())
p = Producer(dict(conf, error_cb=on_error, **{"message.timeout.ms": 2500}))
for i in range(5):
    p.produce(topic, value=("v%d" % i).encode())
left = p.flush(10)
if errors or left:
    print(json.dumps({"errors": errors, "unsent": left})); sys.exit(0)
c = Consumer(dict(conf, error_cb=on_error, **{"group.id": "py", "auto.offset.reset": "earliest"}))
c.subscribe([topic])
got = []
while len(got) < 5 and not errors:
    m = c.poll(20)
    if m is None: break
    if m.error(): errors.append(m.error().str()); break
    got.append(m.value().decode())
c.close()
print(json.dumps({"values": got, "errors": errors}))
`

// TestAuthConfluentPython: confluent-kafka-python (librdkafka) produces and
// consumes over SASL_SSL with SCRAM-SHA-256; with a wrong password its
// error callback gets librdkafka's authentication error and nothing is
// written.
func TestAuthConfluentPython(t *testing.T) {
	py := pythonConfluent(t)
	a := startAuthKatka(t)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(confluentScript), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(pw, topic string) map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, py, script, a.SASLSSL, a.PKI.CA, "bob", pw, topic)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python client: %v\n%s%s", err, out, stderr.Bytes())
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var res map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("python output %q: %v", out, err)
		}
		return res
	}
	res := run("bob-secret", "auth.python")
	if got := fmt.Sprint(res["values"]); got != "[v0 v1 v2 v3 v4]" || len(res["errors"].([]any)) > 0 {
		t.Fatalf("python round trip: %v", res)
	}
	res = run("wrong", "auth.python.denied")
	if errs := fmt.Sprint(res["errors"]); !strings.Contains(errs, "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256") {
		t.Fatalf("python with a wrong password: %v", res)
	}
	if end := a.topicEnd(t, "auth.python.denied"); end != -1 {
		t.Fatalf("denied topic exists (end offset %d)", end)
	}
}

// kafkajsVersion is the kafkajs release the test installs from npm.
const kafkajsVersion = "2.2.4"

// kafkajsDir returns a directory with kafkajs installed by npm, cached per
// user so the registry is asked once; without node and npm the test is
// skipped, unless CI=true.
func kafkajsDir(t *testing.T) (node, dir string) {
	t.Helper()
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr != nil || perr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node and npm are needed for the kafkajs test (apt-get install -y nodejs npm) and CI=true")
		}
		t.Skip("node or npm not installed")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir = filepath.Join(cache, "katka-e2e", "kafkajs-"+kafkajsVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs", "package.json")); err == nil {
		return node, dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "kafkajs@"+kafkajsVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("npm install kafkajs@%s: %v\n%s", kafkajsVersion, err, out)
	}
	return node, dir
}

// kafkajsScript produces 5 messages with SCRAM-SHA-512 over SASL_SSL and
// reads them back with a consumer group; prints one JSON line.
const kafkajsScript = `
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');
const [addr, ca, user, pw, topic] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'kjs', brokers: [addr], logLevel: logLevel.NOTHING, retry: { retries: 1 },
  ssl: { ca: [fs.readFileSync(ca, 'utf-8')] }, sasl: { mechanism: 'scram-sha-512', username: user, password: pw } });
(async () => {
  const p = kafka.producer({ allowAutoTopicCreation: true });
  try { await p.connect(); } catch (e) { console.log(JSON.stringify({ error: e.name + ': ' + e.message })); return; }
  await p.send({ topic, acks: -1, messages: [0,1,2,3,4].map(i => ({ value: 'v' + i })) });
  await p.disconnect();
  const c = kafka.consumer({ groupId: 'kjs' });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve) => {
    c.run({ eachMessage: async ({ message }) => { got.push(message.value.toString()); if (got.length === 5) resolve(); } });
  });
  await c.disconnect();
  console.log(JSON.stringify({ values: got }));
})().catch(e => { console.log(JSON.stringify({ error: e.name + ': ' + e.message })); });
`

// TestAuthKafkajs: kafkajs logs in with SCRAM-SHA-512 over SASL_SSL,
// produces and consumes with a group; a wrong password fails with kafkajs's
// KafkaJSSASLAuthenticationError and nothing is written.
func TestAuthKafkajs(t *testing.T) {
	node, dir := kafkajsDir(t)
	a := startAuthKatka(t)
	script := filepath.Join(dir, "auth-client.js")
	if err := os.WriteFile(script, []byte(kafkajsScript), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(pw, topic string) map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, node, script, a.SASLSSL, a.PKI.CA, "alice", pw, topic).CombinedOutput()
		if err != nil {
			t.Fatalf("kafkajs client: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var res map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("kafkajs output %q: %v", out, err)
		}
		return res
	}
	if res := run("alice-secret", "auth.kafkajs"); fmt.Sprint(res["values"]) != "[v0 v1 v2 v3 v4]" {
		t.Fatalf("kafkajs round trip: %v", res)
	}
	res := run("wrong", "auth.kafkajs.denied")
	if e := fmt.Sprint(res["error"]); !strings.HasPrefix(e, "KafkaJSSASLAuthenticationError: SASL SCRAM SHA512 authentication failed") {
		t.Fatalf("kafkajs with a wrong password: %v", res)
	}
	if end := a.topicEnd(t, "auth.kafkajs.denied"); end != -1 {
		t.Fatalf("denied topic exists (end offset %d)", end)
	}
}
