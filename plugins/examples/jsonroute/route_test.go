package main

import (
	"context"
	"reflect"
	"testing"

	"github.com/katka-io/katka/plugins/sdk"
)

func TestRouteByJSONField(t *testing.T) {
	p := &Partitioner{}
	if err := p.Configure("r", sdk.Settings{"field": "meta.line", "fallback_partition": "2"}); err != nil {
		t.Fatal(err)
	}
	recs := []sdk.Record{
		{Value: []byte(`{"meta":{"line":5}}`)},
		{Value: []byte(`{"meta":{"line":-1}}`)},
		{Value: []byte(`{"meta":{"line":"L7"}}`)},
		{Value: []byte(`{"meta":{"line":"L7"}}`)},
		{Value: []byte(`not json`)},
		{Value: []byte(`{}`), Key: []byte("k")},
	}
	got, err := p.Partition(context.Background(), "t", 4, recs)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{1, 3, hash("L7", 4), hash("L7", 4), 2, hash("k", 4)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if _, err := p.Partition(context.Background(), "t", 0, recs); err == nil {
		t.Fatal("0 partitions accepted")
	}
	if err := (&Partitioner{}).Configure("r", sdk.Settings{}); err == nil {
		t.Fatal("missing field accepted")
	}
}
