package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/katka-io/katka/plugins/proto"
)

func TestSettings(t *testing.T) {
	s := Settings{"n": "12", "d": "1500ms", "bad": "x"}
	if n, err := s.Int("n", 0); err != nil || n != 12 {
		t.Fatal(n, err)
	}
	if n, err := s.Int("missing", 7); err != nil || n != 7 {
		t.Fatal(n, err)
	}
	if _, err := s.Int("bad", 0); err == nil {
		t.Fatal("bad int accepted")
	}
	if d, err := s.Duration("d", 0); err != nil || d != 1500*time.Millisecond {
		t.Fatal(d, err)
	}
	if _, err := s.Duration("bad", 0); err == nil {
		t.Fatal("bad duration accepted")
	}
	if s.String("missing", "def") != "def" || s.String("n", "") != "12" {
		t.Fatal("String")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := []Record{
		{Key: nil, Value: []byte("v"), Timestamp: time.UnixMilli(1234), Topic: "t", Partition: 2, PartitionSet: true, Offset: 9,
			Headers: []Header{{Key: "h", Value: []byte("x")}}},
		{Key: []byte{}, Value: nil},
		{Key: []byte("k"), Value: []byte("v")},
	}
	out := FromProto(ToProto(in))
	if out[0].Key != nil || out[1].Key == nil || string(out[2].Key) != "k" {
		t.Fatalf("null/empty keys: %#v", out)
	}
	if !reflect.DeepEqual(out[0], in[0]) {
		t.Fatalf("got %#v want %#v", out[0], in[0])
	}
}

func TestStateChanges(t *testing.T) {
	st := NewState(map[string][]byte{"a": []byte("1")})
	st.Put("b", []byte("2"))
	st.Delete("a")
	ch := st.changes()
	want := []*pb.StateEntry{{Key: "a", Deleted: true}, {Key: "b", Value: []byte("2")}}
	if len(ch) != 2 || ch[0].Key != want[0].Key || !ch[0].Deleted || ch[1].Key != "b" || string(ch[1].Value) != "2" {
		t.Fatalf("changes %v", ch)
	}
	if len(st.changes()) != 0 || st.Len() != 1 {
		t.Fatal("changes not reset")
	}
}

type proc struct{}

func (proc) Configure(string, Settings, *State) error { return nil }
func (proc) Process(_ context.Context, r []Record, st *State) ([]Record, error) {
	st.Put("n", []byte{byte(len(r))})
	return r, nil
}

func TestKindOfAndProcessorServer(t *testing.T) {
	if k, err := KindOf(proc{}); err != nil || k != KindProcessor {
		t.Fatal(k, err)
	}
	if _, err := KindOf(42); err == nil {
		t.Fatal("int accepted as a plugin")
	}
	s := &processorServer{impl: proc{}}
	if _, err := s.Configure(context.Background(), &pb.ConfigureRequest{State: []*pb.StateEntry{{Key: "old", Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Process(context.Background(), &pb.ProcessRequest{Records: ToProto([]Record{{Value: []byte("a")}})})
	if err != nil || len(resp.Records) != 1 || len(resp.State) != 1 || resp.State[0].Key != "n" {
		t.Fatalf("%v %v", resp, err)
	}
	if v, ok := s.state.Get("old"); !ok || string(v) != "x" {
		t.Fatal("restored state lost")
	}
}

func TestLoggerWritesGoPluginJSON(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf).Info("hello", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["@message"] != "hello" || m["@level"] != "info" || m["k"] != 1.0 || m["@timestamp"] == nil {
		t.Fatalf("log line %s", buf.Bytes())
	}
}

// TestToProtoInvalidUTF8HeaderKey: an output header key that is not UTF-8
// must not make the whole response unencodable.
func TestToProtoInvalidUTF8HeaderKey(t *testing.T) {
	resp := &pb.ProcessResponse{Records: ToProto([]Record{{Value: []byte("v"), Headers: []Header{{Key: "a\xff\xfeb", Value: []byte{0xff}}}}})}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back pb.ProcessResponse
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if h := back.GetRecords()[0].GetHeaders()[0]; h.GetKey() != "a\uFFFDb" || !bytes.Equal(h.GetValue(), []byte{0xff}) {
		t.Fatalf("header %q = %q", h.GetKey(), h.GetValue())
	}
}
