package firmware

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics names the Kafka topics an artefact travels in.
type Topics struct {
	Manifests, Chunks string
}

// DefaultTopics are the topic names used unless configured otherwise.
var DefaultTopics = Topics{Manifests: DefaultManifestTopic, Chunks: DefaultChunkTopic}

// EnsureTopics creates the manifest topic (compacted, one partition) and the
// chunk topic (one partition, chunk-sized max.message.bytes) when missing.
func EnsureTopics(ctx context.Context, cl *kgo.Client, t Topics, chunkSize int) error {
	adm := kadm.NewClient(cl)
	maxMsg := strconv.Itoa(max(chunkSize, MaxManifestBytes) + 64<<10)
	for _, tc := range []struct {
		name string
		cfg  map[string]*string
	}{
		{t.Manifests, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "max.message.bytes": &maxMsg}},
		{t.Chunks, map[string]*string{"max.message.bytes": &maxMsg}},
	} {
		res, err := adm.CreateTopic(ctx, 1, -1, tc.cfg, tc.name)
		if err == nil {
			err = res.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", tc.name, err)
		}
	}
	return nil
}

// Publisher writes signed manifests and chunks to a Kafka cluster.
type Publisher struct {
	cl     *kgo.Client
	topics Topics
}

// NewPublisher publishes through cl (which must allow records of the chunk size).
func NewPublisher(cl *kgo.Client, t Topics) *Publisher { return &Publisher{cl: cl, topics: t} }

// PublishRoot writes a root envelope under its version's key.
func (p *Publisher) PublishRoot(ctx context.Context, rootEnv []byte) error {
	env, err := ParseEnvelope(rootEnv)
	if err != nil {
		return err
	}
	var r Root
	if err := json.Unmarshal(env.Signed, &r); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	return p.cl.ProduceSync(ctx, &kgo.Record{Topic: p.topics.Manifests, Key: []byte(RootKey(r.Version)), Value: rootEnv}).FirstErr()
}

// PublishManifest writes only the signed manifest: for re-signing an
// artefact already published (a later expiry, pause, abort, revokes).
func (p *Publisher) PublishManifest(ctx context.Context, m Manifest, key ed25519.PrivateKey) error {
	env, err := Sign(m, key)
	if err != nil {
		return err
	}
	val, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return p.cl.ProduceSync(ctx, &kgo.Record{Topic: p.topics.Manifests, Key: []byte(m.Name), Value: val}).FirstErr()
}

// Publish writes the signed manifest, then every chunk of the file at path,
// calling progress after each acknowledged chunk with the bytes sent so far.
// The manifest goes first so an edge can verify chunks as they arrive.
func (p *Publisher) Publish(ctx context.Context, path string, m Manifest, key ed25519.PrivateKey, progress func(sent int64)) error {
	env, err := Sign(m, key)
	if err != nil {
		return err
	}
	val, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := p.cl.ProduceSync(ctx, &kgo.Record{Topic: p.topics.Manifests, Key: []byte(m.Name), Value: val}).FirstErr(); err != nil {
		return fmt.Errorf("publish manifest: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open artefact: %w", err)
	}
	defer f.Close()
	// Up to 16 chunks in flight; each chunk is re-read and checked against the
	// manifest so a file changed since BuildManifest is not published.
	var sent int64
	errc := make(chan error, 1)
	inflight := make(chan struct{}, 16)
	for i := range m.Chunks {
		buf := make([]byte, m.ChunkLen(i))
		if _, err := io.ReadFull(f, buf); err != nil {
			return fmt.Errorf("read chunk %d: %w", i, err)
		}
		if HashHex(buf) != m.Chunks[i] {
			return fmt.Errorf("chunk %d of %s changed since the manifest was built", i, path)
		}
		select {
		case err := <-errc:
			return err
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := int64(len(buf))
		p.cl.Produce(ctx, &kgo.Record{Topic: p.topics.Chunks, Key: []byte(ChunkKey(m.Name, m.Version, i)), Value: buf,
			Headers: []kgo.RecordHeader{{Key: "katka.firmware.sha256", Value: []byte(m.Chunks[i])}}},
			func(_ *kgo.Record, err error) {
				<-inflight
				if err != nil {
					select {
					case errc <- fmt.Errorf("publish chunk: %w", err):
					default:
					}
					return
				}
				if progress != nil {
					progress(addInt64(&sent, n))
				}
			})
	}
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("publish chunks: %w", err)
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	return nil
}

// Manifests reads the manifest topic from the start to its current end and
// returns the last envelope per key (what compaction would keep).
func Manifests(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) (map[string][]byte, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	end := int64(0)
	if o, ok := ends.Lookup(topic, 0); ok {
		if o.Err != nil {
			return nil, fmt.Errorf("offsets of %s: %w", topic, o.Err)
		}
		end = o.Offset
	}
	out := map[string][]byte{}
	for next := int64(0); next < end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, e := range fs.Errors() {
			return nil, fmt.Errorf("read %s: %w", topic, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[string(r.Key)] = r.Value
			next = r.Offset + 1
		})
	}
	return out, nil
}

// DefaultExpiry is how long a published manifest stays valid unless told.
const DefaultExpiry = 90 * 24 * time.Hour
