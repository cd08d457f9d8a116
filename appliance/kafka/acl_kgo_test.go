package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// fromIP makes a kgo client dial from a loopback address of its own, so ACLs
// with a host can tell two clients on one listener apart before SASL gives
// them names (both are User:ANONYMOUS on a plaintext listener).
func fromIP(ip string) kgo.Opt {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return kgo.Dialer(d.DialContext)
}

// aclEnv is a listener with authorization on: User:ANONYMOUS from 127.0.0.2
// may do everything (the admin), from 127.0.0.1 only what the test grants.
func aclEnv(t *testing.T) (*testEnv, *kadm.Client) {
	t.Helper()
	a, err := auth.NewAuthorizer(auth.AuthorizerConfig{Enabled: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	admin := "127.0.0.2"
	for _, rt := range []auth.ResourceType{auth.ResourceCluster, auth.ResourceTopic, auth.ResourceGroup, auth.ResourceTransactionalID} {
		name := "*"
		if rt == auth.ResourceCluster {
			name = auth.ClusterName
		}
		if err := a.Add(auth.ACL{Principal: "User:ANONYMOUS", Host: admin, ResourceType: rt, Name: name, Pattern: auth.PatternLiteral, Operation: auth.OpAll, Permission: auth.PermissionAllow}); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnvConfig(t, Config{Authorizer: a})
	return e, kadm.NewClient(e.client(t, fromIP(admin)))
}

func TestACLsPrefixedReaderAndDenyWins(t *testing.T) {
	e, adm := aclEnv(t)
	ctx := ctxT(t)
	for _, topic := range []string{"sensors.temp", "sensors.secret", "plant.power"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatalf("admin create %s: %v", topic, err)
		}
	}
	prod := e.client(t, fromIP("127.0.0.2"))
	for _, topic := range []string{"sensors.temp", "sensors.secret", "plant.power"} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v-" + topic)}).FirstErr(); err != nil {
			t.Fatalf("admin produce %s: %v", topic, err)
		}
	}
	// READ on sensors. (prefixed) and on group dash; DENY READ on sensors.secret.
	b := kadm.NewACLs().Allow("User:ANONYMOUS").AllowHosts("127.0.0.1").Topics("sensors.").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead)
	g := kadm.NewACLs().Allow("User:ANONYMOUS").AllowHosts("127.0.0.1").Groups("dash").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead)
	d := kadm.NewACLs().Deny("User:ANONYMOUS").DenyHosts("127.0.0.1").Topics("sensors.secret").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead)
	for _, acl := range []*kadm.ACLBuilder{b, g, d} {
		res, err := adm.CreateACLs(ctx, acl)
		if err != nil || len(res) != 1 || res[0].Err != nil {
			t.Fatalf("CreateACLs: %v %+v", err, res)
		}
	}

	reader := e.client(t, fromIP("127.0.0.1"))
	radm := kadm.NewClient(reader)
	// Metadata lists only what the reader may describe.
	md, err := radm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := md.Topics.Names(); !slices.Equal(sortedCopy(got), []string{"sensors.secret", "sensors.temp"}) {
		t.Fatalf("reader's metadata lists %v, want only the sensors. topics", got)
	}
	mdOther, err := radm.Metadata(ctx, "plant.power")
	if err == nil {
		err = mdOther.Topics["plant.power"].Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("metadata for plant.power: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}

	// Consume sensors.temp in group dash, committing.
	cons := e.client(t, fromIP("127.0.0.1"), kgo.ConsumeTopics("sensors.temp"), kgo.ConsumerGroup("dash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	fs := cons.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("reader consume sensors.temp: %v", err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "v-sensors.temp" {
		t.Fatalf("reader got %v", recs)
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit in group dash: %v", err)
	}

	// Produce: TOPIC_AUTHORIZATION_FAILED (kgo's idempotent producer first
	// needs InitProducerId, which Kafka refuses without WRITE anywhere).
	perr := e.client(t, fromIP("127.0.0.1"), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1)).ProduceSync(ctx, &kgo.Record{Topic: "sensors.temp", Value: []byte("x")}).FirstErr()
	if !errors.Is(perr, kerr.TopicAuthorizationFailed) {
		t.Fatalf("reader produce: %v, want TOPIC_AUTHORIZATION_FAILED", perr)
	}
	ierr := e.client(t, fromIP("127.0.0.1"), kgo.RecordRetries(1)).ProduceSync(ctx, &kgo.Record{Topic: "sensors.temp", Value: []byte("x")}).FirstErr()
	if !errors.Is(ierr, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("reader idempotent produce: %v, want CLUSTER_AUTHORIZATION_FAILED", ierr)
	}

	// Fetch of another topic, and of the denied one, by hand (a kgo consumer
	// would only log and retry).
	amd, err := adm.Metadata(ctx, "plant.power", "sensors.secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"plant.power", "sensors.secret"} {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MaxBytes = 0, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, amd.Topics[topic].ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
		req.Topics = []kmsg.FetchRequestTopic{rt}
		resp, err := req.RequestWith(ctx, reader)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != errTopicAuthorizationFailed || len(p.RecordBatches) != 0 {
			t.Fatalf("fetch %s: error %d with %d bytes, want TOPIC_AUTHORIZATION_FAILED and nothing", topic, p.ErrorCode, len(p.RecordBatches))
		}
	}

	// A group without an ACL.
	other := e.client(t, fromIP("127.0.0.1"), kgo.ConsumeTopics("sensors.temp"), kgo.ConsumerGroup("other"))
	jerr := make(chan error, 1)
	go func() {
		for {
			fs := other.PollFetches(ctx)
			for _, fe := range fs.Errors() {
				jerr <- fe.Err
				return
			}
			if ctx.Err() != nil {
				jerr <- ctx.Err()
				return
			}
		}
	}()
	if err := <-jerr; !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("group other: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	other.Close()
	ocom, err := radm.FetchOffsets(ctx, "other")
	if err == nil {
		err = ocom.Error()
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("offset fetch of group other: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}

	// OffsetDelete needs DELETE on the group and READ on each topic.
	dres, err := radm.DeleteOffsets(ctx, "dash", kadm.TopicsSet{"plant.power": {0: {}}})
	if err == nil {
		err = dres.Error()
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("offset delete without DELETE on the group: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	gd := kadm.NewACLs().Allow("User:ANONYMOUS").AllowHosts("127.0.0.1").Groups("dash").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpDelete)
	if res, err := adm.CreateACLs(ctx, gd); err != nil || res[0].Err != nil {
		t.Fatalf("CreateACLs: %v %+v", err, res)
	}
	dres, err = radm.DeleteOffsets(ctx, "dash", kadm.TopicsSet{"plant.power": {0: {}}})
	if err == nil {
		err = dres.Error()
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("offset delete on plant.power: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if _, err := adm.DeleteACLs(ctx, gd); err != nil {
		t.Fatal(err)
	}

	// Describe and delete the ACLs with kadm; once the DENY is gone the reader
	// may read sensors.secret.
	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny).Allow().Deny().AllowHosts().DenyHosts())
	if err != nil || len(described) != 1 || described[0].Err != nil {
		t.Fatalf("DescribeACLs: %v %+v", err, described)
	}
	if n := len(described[0].Described); n != 7 { // 4 admin + 3 above
		t.Fatalf("DescribeACLs found %d ACLs, want 7: %+v", n, described[0].Described)
	}
	del, err := adm.DeleteACLs(ctx, kadm.NewACLs().Deny("User:ANONYMOUS").DenyHosts("127.0.0.1").Topics("sensors.secret").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead))
	if err != nil || len(del) != 1 || del[0].Err != nil || len(del[0].Deleted) != 1 {
		t.Fatalf("DeleteACLs: %v %+v", err, del)
	}
	secret := e.client(t, fromIP("127.0.0.1"), kgo.ConsumeTopics("sensors.secret"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs = secret.PollFetches(ctx)
	if err := fs.Err(); err != nil || len(fs.Records()) != 1 {
		t.Fatalf("after the DENY was deleted: %v, %d records", err, len(fs.Records()))
	}

	// The reader may not manage ACLs.
	res, err := radm.CreateACLs(ctx, b)
	if err == nil && len(res) == 1 {
		err = res[0].Err
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("reader CreateACLs: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestAuthorizationOffByDefault: with no authorizer every request works as
// before, and the ACL APIs answer SECURITY_DISABLED.
func TestAuthorizationOffByDefault(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	if _, err := e.b.EnsureTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	res, err := kadm.NewClient(cl).DescribeACLs(ctx, kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny).Allow().Deny().AllowHosts().DenyHosts())
	if err == nil && len(res) == 1 {
		err = res[0].Err
	}
	if !errors.Is(err, kerr.SecurityDisabled) {
		t.Fatalf("DescribeACLs without an authorizer: %v, want SECURITY_DISABLED", err)
	}
}

// TestAuthorizeByPrincipalOnContext checks the handlers read the principal
// from the request's context (what SASL sets per connection).
func TestAuthorizeByPrincipalOnContext(t *testing.T) {
	a, _ := auth.NewAuthorizer(auth.AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:admin"}, Logger: slog.New(slog.DiscardHandler)})
	if err := a.Add(auth.ACL{Principal: "User:alice", Host: "*", ResourceType: auth.ResourceTopic, Name: "sensors.", Pattern: auth.PatternPrefixed, Operation: auth.OpRead, Permission: auth.PermissionAllow}); err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, Config{Authorizer: a})
	for _, name := range []string{"sensors.a", "plant.b"} {
		if _, err := e.b.EnsureTopic(name, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := &conn{remote: "192.0.2.7:5555"}
	names := func(p auth.Principal) []string {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(12)
		resp, err := e.srv.handleMetadata(auth.WithPrincipal(context.Background(), p), c, req)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tp := range resp.(*kmsg.MetadataResponse).Topics {
			out = append(out, *tp.Topic)
		}
		return sortedCopy(out)
	}
	if got := names(auth.Principal{Type: "User", Name: "alice"}); !slices.Equal(got, []string{"sensors.a"}) {
		t.Errorf("alice sees %v", got)
	}
	if got := names(auth.Principal{Type: "User", Name: "admin"}); !slices.Contains(got, "plant.b") {
		t.Errorf("super user sees %v", got)
	}
	if got := names(auth.Anonymous); len(got) != 0 {
		t.Errorf("anonymous sees %v", got)
	}
	if got := names(auth.Internal); !slices.Contains(got, "plant.b") {
		t.Errorf("internal sees %v", got)
	}
}
