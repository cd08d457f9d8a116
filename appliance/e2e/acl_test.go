package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// kgoFrom makes a kgo client connect from a loopback address of its own.
// Every client of a plaintext listener is User:ANONYMOUS, so the ACLs of
// TestACLsEndToEnd tell the admin (127.0.0.1: the katka CLI and kadm) from
// the restricted reader (127.0.0.2) by host: the host part of Kafka's ACL
// model. TestACLsWithSCRAM does the same with SCRAM users.
func kgoFrom(ip string) kgo.Opt {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return kgo.Dialer(d.DialContext)
}

// aclConfig turns authorization on and, through auth.acl, lets
// User:ANONYMOUS from 127.0.0.1 do everything.
const aclConfig = testConfig + `auth:
  authorization: true
  acl:
    - {principal: "User:ANONYMOUS", host: 127.0.0.1, resource: cluster, operations: [all]}
    - {principal: "User:ANONYMOUS", host: 127.0.0.1, resource: topic, name: "*", operations: [all]}
    - {principal: "User:ANONYMOUS", host: 127.0.0.1, resource: group, name: "*", operations: [all]}
`

// TestACLsEndToEnd: the real binary with auth.authorization on. The katka
// CLI adds READ on the prefix sensors. and on group dash for the reader,
// and a DENY on sensors.secret; the reader (kgo) consumes sensors.temp in
// group dash, sees only the sensors. topics in Metadata, gets
// TOPIC_AUTHORIZATION_FAILED on produce and on other topics and the denied
// one, GROUP_AUTHORIZATION_FAILED on another group. The ACLs survive a
// restart; kadm describes them and `katka acl remove` deletes the DENY.
func TestACLsEndToEnd(t *testing.T) {
	k := startKafkaKatkaWith(t, aclConfig)
	ctx := kafkaCtx(t, 90*time.Second)
	adm := kadm.NewClient(k.client(t))
	prod := k.client(t)
	for _, topic := range []string{"sensors.temp", "sensors.secret", "plant.power"} {
		k.createTopic(t, ctx, topic, 1)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v-" + topic)}).FirstErr(); err != nil {
			t.Fatalf("admin produce %s: %v", topic, err)
		}
	}
	katka := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, k.bin, append(append([]string{"acl"}, args...), "--brokers", k.KafkaAddr)...).CombinedOutput()
		if err != nil {
			t.Fatalf("katka acl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	katka("add", "--principal", "User:ANONYMOUS", "--host", "127.0.0.2", "--topic", "sensors.", "--prefixed", "--operation", "read")
	katka("add", "--principal", "User:ANONYMOUS", "--host", "127.0.0.2", "--group", "dash", "--operation", "read")
	katka("add", "--principal", "User:ANONYMOUS", "--host", "127.0.0.2", "--topic", "sensors.secret", "--operation", "read", "--deny")
	list := katka("list", "--principal", "User:ANONYMOUS", "--host", "127.0.0.2")
	for _, want := range []string{"TOPIC     PREFIXED  sensors.", "GROUP     LITERAL   dash", "sensors.secret  READ       DENY"} {
		if !strings.Contains(strings.Join(strings.Fields(list), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("katka acl list lacks %q:\n%s", want, list)
		}
	}

	as127002 := kgoFrom("127.0.0.2")
	checkRestrictedReader(t, ctx, k, "first run", as127002)

	// The ACLs are durable: the same after a restart.
	k.stop()
	if err := k.restart(); err != nil {
		t.Fatal(err)
	}
	// Group dash committed the first record: give it a new one.
	if err := k.client(t).ProduceSync(ctx, &kgo.Record{Topic: "sensors.temp", Value: []byte("v-sensors.temp-2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	checkRestrictedReader(t, ctx, k, "after restart", as127002)

	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny).Allow().Deny().AllowHosts().DenyHosts())
	if err != nil || len(described) != 1 || described[0].Err != nil || len(described[0].Described) != 6 {
		t.Fatalf("kadm DescribeACLs: %v %+v, want the 3 ACLs of the config and 3 added", err, described)
	}
	out := katka("remove", "--principal", "User:ANONYMOUS", "--topic", "sensors.secret", "--deny")
	if !strings.Contains(out, "removed DENY User:ANONYMOUS READ on TOPIC LITERAL:sensors.secret") {
		t.Fatalf("katka acl remove: %s", out)
	}
	sec := k.client(t, kgoFrom("127.0.0.2"), kgo.ConsumeTopics("sensors.secret"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if fs := sec.PollFetches(ctx); fs.Err() != nil || len(fs.Records()) != 1 {
		t.Fatalf("after removing the DENY: %v, %d records", fs.Err(), len(fs.Records()))
	}
}

// checkRestrictedReader checks what a client allowed READ on the prefix
// sensors. and on group dash, with a DENY READ on sensors.secret, may do:
// connect sets how it connects (and so who it is).
func checkRestrictedReader(t *testing.T, ctx context.Context, k *kafkaKatka, phase string, connect ...kgo.Opt) {
	t.Helper()
	reader := k.client(t, connect...)
	radm := kadm.NewClient(reader)
	md, err := radm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := md.Topics.Names()
	slices.Sort(names)
	if !slices.Equal(names, []string{"sensors.secret", "sensors.temp"}) {
		t.Fatalf("%s: reader's Metadata lists %v, want only the sensors. topics", phase, names)
	}
	cons := k.client(t, append(slices.Clone(connect), kgo.ConsumeTopics("sensors.temp"), kgo.ConsumerGroup("dash"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	fs := cons.PollFetches(ctx)
	if err := fs.Err(); err != nil || len(fs.Records()) == 0 || !strings.HasPrefix(string(fs.Records()[0].Value), "v-sensors.temp") {
		t.Fatalf("%s: reader consume sensors.temp in group dash: %v %v", phase, err, fs.Records())
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("%s: commit in group dash: %v", phase, err)
	}
	cons.Close()
	perr := k.client(t, append(slices.Clone(connect), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))...).
		ProduceSync(ctx, &kgo.Record{Topic: "sensors.temp", Value: []byte("x")}).FirstErr()
	if !errors.Is(perr, kerr.TopicAuthorizationFailed) {
		t.Fatalf("%s: reader produce: %v, want TOPIC_AUTHORIZATION_FAILED", phase, perr)
	}
	for _, topic := range []string{"plant.power", "sensors.secret"} {
		lo, err := radm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = lo.Error()
		}
		if topic == "sensors.secret" {
			// DESCRIBE is implied by the prefixed READ; the DENY is on READ.
			if err != nil {
				t.Fatalf("%s: list offsets of %s: %v", phase, topic, err)
			}
			continue
		}
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("%s: list offsets of %s: %v, want TOPIC_AUTHORIZATION_FAILED", phase, topic, err)
		}
	}
	fo, err := radm.FetchOffsets(ctx, "other")
	if err == nil {
		err = fo.Error()
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("%s: offsets of group other: %v, want GROUP_AUTHORIZATION_FAILED", phase, err)
	}
	// Reading the denied topic: the consumer's fetch gets the error.
	sec := k.client(t, append(slices.Clone(connect), kgo.ConsumeTopics("sensors.secret"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	for {
		fs := sec.PollFetches(ctx)
		if len(fs.Records()) > 0 {
			t.Fatalf("%s: reader got records of sensors.secret despite the DENY", phase)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			if !errors.Is(errs[0].Err, kerr.TopicAuthorizationFailed) {
				t.Fatalf("%s: reading sensors.secret: %v, want TOPIC_AUTHORIZATION_FAILED", phase, errs[0].Err)
			}
			break
		}
	}
	sec.Close()
}

// TestACLsWithSCRAM: the same reader rules for a user who logs in with
// SCRAM-SHA-256 on a sasl_plaintext listener. The bootstrap admin (a super
// user from auth.admin_password_file) creates the user alice with kadm
// (AlterUserScramCredentials), the topics and alice's ACLs (CreateACLs);
// alice then gets exactly what the ACLs give User:alice, and an anonymous
// client of the plaintext listener sees no topic at all.
func TestACLsWithSCRAM(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "admin.pw")
	if err := os.WriteFile(pwFile, []byte("admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	saslAddr := "127.0.0.1:" + strconv.Itoa(port)
	k := startKafkaKatkaWith(t, testConfig+`kafka:
  listeners:
    - {name: SASL, addr: "`+saslAddr+`", security: sasl_plaintext}
auth:
  authorization: true
  admin_password_file: "`+pwFile+`"
`)
	ctx := kafkaCtx(t, 90*time.Second)
	login := func(user, pass string) []kgo.Opt {
		return []kgo.Opt{kgo.SeedBrokers(saslAddr), kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())}
	}
	adminCl := k.client(t, login("admin", "admin-secret")...)
	adm := kadm.NewClient(adminCl)
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice", Mechanism: kadm.ScramSha256, Password: "alice-secret"}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("admin creates alice: %v", err)
	}
	for _, topic := range []string{"sensors.temp", "sensors.secret", "plant.power"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
		if err := adminCl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v-" + topic)}).FirstErr(); err != nil {
			t.Fatalf("admin produce %s: %v", topic, err)
		}
	}
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").Topics("sensors.").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Groups("dash").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead),
		kadm.NewACLs().Deny("User:alice").Topics("sensors.secret").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead),
	} {
		res, err := adm.CreateACLs(ctx, b)
		if err == nil && len(res) > 0 {
			err = res[0].Err
		}
		if err != nil {
			t.Fatalf("CreateACLs: %v", err)
		}
	}
	checkRestrictedReader(t, ctx, k, "alice over SCRAM-SHA-256", login("alice", "alice-secret")...)

	// User:ANONYMOUS on the plaintext listener has no ACL: it sees nothing.
	md, err := kadm.NewClient(k.client(t)).Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := md.Topics.Names(); len(names) != 0 {
		t.Fatalf("anonymous client sees %v, want no topic", names)
	}
}
