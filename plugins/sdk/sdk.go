// Package sdk is what a Go plugin author imports: implement one of Partitioner,
// Processor, Sink or Source and call Serve from main. katka starts the binary,
// shakes hands through github.com/hashicorp/go-plugin and calls it over gRPC
// with batches of records (see plugins/proto/katka_plugin.proto).
//
//	func main() { sdk.Serve(&mySink{}) }
//
// Log with sdk.Logger(): its lines appear in katka's log under the plugin's name.
package sdk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/katka-io/katka/plugins/proto"
)

// ProtocolVersion is the plugin protocol version katka and the plugin must share.
const ProtocolVersion = 1

// MaxMessageBytes bounds one gRPC message (one batch) in either direction.
const MaxMessageBytes = 64 << 20

// Handshake is the go-plugin handshake: katka sets KATKA_PLUGIN_COOKIE in the
// plugin's environment so that a plugin run by hand explains itself and exits.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KATKA_PLUGIN_COOKIE",
	MagicCookieValue: "katka-plugin-v1-3f1e6c2a",
}

// Plugin kinds, as written in a manifest's kind field.
const (
	KindPartitioner = "partitioner"
	KindProcessor   = "processor"
	KindSink        = "sink"
	KindSource      = "source"
)

// Kinds lists every plugin kind.
var Kinds = []string{KindPartitioner, KindProcessor, KindSink, KindSource}

// Header is one record header. Key is valid UTF-8 (a string on the wire):
// katka hands a Kafka header key that is not with each invalid byte sequence
// replaced by U+FFFD, and ToProto does the same for a plugin's output.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record as plugins see it. On input Topic, Partition and Offset
// say where it was read. On output Topic picks the output topic (empty: the
// instance's output), and Partition is used only when PartitionSet is true.
type Record struct {
	Key, Value   []byte
	Headers      []Header
	Timestamp    time.Time
	Topic        string
	Partition    int32
	PartitionSet bool
	Offset       int64
}

// Settings are an instance's "key=value" settings from katka's config.
type Settings map[string]string

// String returns the setting key, or def when it is not set.
func (s Settings) String(key, def string) string {
	if v, ok := s[key]; ok {
		return v
	}
	return def
}

// Int returns the setting key as an integer, or def when it is not set.
func (s Settings) Int(key string, def int64) (int64, error) {
	v, ok := s[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("setting %s: %q is not an integer", key, v)
	}
	return n, nil
}

// Duration returns the setting key as a duration (e.g. 10s), or def when it is not set.
func (s Settings) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := s[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("setting %s: %q is not a duration (e.g. 10s)", key, v)
	}
	return d, nil
}

// Partitioner chooses the partition of each record an internal producer writes.
type Partitioner interface {
	Configure(instance string, s Settings) error
	// Partition returns one partition in [0, partitions) per record, in order.
	Partition(ctx context.Context, topic string, partitions int32, recs []Record) ([]int32, error)
}

// Processor turns batches of input records into output records. State is the
// instance's key-value state: katka saves the changes made during a call
// together with the batch's input positions, and hands the state back to
// Configure after a restart, so a stateful processor is exact across crashes.
// An error makes katka restart the plugin and retry the batch.
type Processor interface {
	Configure(instance string, s Settings, state *State) error
	Process(ctx context.Context, recs []Record, state *State) ([]Record, error)
}

// Sink writes batches outside katka. Write returns only when the records are
// durable there; then katka commits their positions (at least once: after a
// crash the uncommitted tail is written again).
type Sink interface {
	Configure(instance string, s Settings) error
	Write(ctx context.Context, recs []Record) error
}

// Source brings records into katka. Read emits batches, each with the position
// to resume after it, until ctx ends; it starts after position (nil: the
// beginning). katka stores a batch's position once the batch is durable.
type Source interface {
	Configure(instance string, s Settings) error
	Read(ctx context.Context, position []byte, emit func(recs []Record, position []byte) error) error
}

// Serve runs impl (a Partitioner, Processor, Sink or Source) as a katka plugin
// until katka stops it. It does not return.
func Serve(impl any) {
	kind, err := KindOf(impl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "katka plugin:", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{kind: &GRPCPlugin{Kind: kind, Impl: impl}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))...)
		},
	})
	os.Exit(0)
}

// KindOf returns the plugin kind impl implements.
func KindOf(impl any) (string, error) {
	switch impl.(type) {
	case Partitioner:
		return KindPartitioner, nil
	case Processor:
		return KindProcessor, nil
	case Sink:
		return KindSink, nil
	case Source:
		return KindSource, nil
	}
	return "", fmt.Errorf("%T implements none of sdk.Partitioner, sdk.Processor, sdk.Sink, sdk.Source", impl)
}

// GRPCPlugin is the go-plugin glue for one kind. On the plugin side Impl is
// served; on the host side GRPCClient returns the raw *grpc.ClientConn.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Kind string
	Impl any
}

// GRPCServer registers the service of p.Kind backed by p.Impl.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	switch impl := p.Impl.(type) {
	case Partitioner:
		pb.RegisterPartitionerServer(s, &partitionerServer{impl: impl})
	case Processor:
		pb.RegisterProcessorServer(s, &processorServer{impl: impl, state: NewState(nil)})
	case Sink:
		pb.RegisterSinkServer(s, &sinkServer{impl: impl})
	case Source:
		pb.RegisterSourceServer(s, &sourceServer{impl: impl})
	default:
		return fmt.Errorf("%T is not a katka plugin", p.Impl)
	}
	return nil
}

// GRPCClient returns the connection; the host wraps it in the typed client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// Logger returns a logger whose lines katka copies into its own log, tagged
// with the plugin instance (JSON lines on stderr in go-plugin's format).
func Logger() *slog.Logger { return newLogger(stderr) }

// stderr is the process's real stderr, taken before Serve: go-plugin then
// redirects os.Stderr into its own stdio stream.
var stderr = os.Stderr

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}
