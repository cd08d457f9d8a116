package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

type in struct {
	key   string
	sec   int64
	value string
}

// Known input: window 10s, grace 5s. Records at 8s and 19s arrive after
// their windows closed (late); the record at 9s is late but within grace.
var input = []in{
	{"a", 0, `{"value":1}`}, {"a", 3, `{"value":3}`}, {"b", 4, `{"value":10}`},
	{"a", 12, `{"value":5}`}, {"b", 9, `{"value":20}`}, {"a", 15, `{"value":7}`},
	{"a", 8, `{"value":100}`}, {"b", 14, `{"value":2}`}, {"x", 14, `not json`},
	{"a", 31, `{"value":1}`}, {"a", 19, `{"value":50}`}, {"a", 29, `{"value":4}`},
}

var wantOut = []string{
	`out a {"key":"a","window_start":"1970-01-01T00:00:00Z","window_end":"1970-01-01T00:00:10Z","count":2,"sum":4,"avg":2}`,
	`out b {"key":"b","window_start":"1970-01-01T00:00:00Z","window_end":"1970-01-01T00:00:10Z","count":2,"sum":30,"avg":15}`,
	`late a {"value":100}`,
	`dead x not json`,
	`out a {"key":"a","window_start":"1970-01-01T00:00:10Z","window_end":"1970-01-01T00:00:20Z","count":2,"sum":12,"avg":6}`,
	`out b {"key":"b","window_start":"1970-01-01T00:00:10Z","window_end":"1970-01-01T00:00:20Z","count":1,"sum":2,"avg":2}`,
	`late a {"value":50}`,
}

var settings = sdk.Settings{"window": "10s", "grace": "5s", "late_topic": "late", "dead_letter_topic": "dead"}

func records() []sdk.Record {
	out := make([]sdk.Record, len(input))
	for i, r := range input {
		out[i] = sdk.Record{Key: []byte(r.key), Value: []byte(r.value), Timestamp: time.Unix(r.sec, 0), Offset: int64(i)}
	}
	return out
}

func show(recs []sdk.Record) []string {
	var s []string
	for _, r := range recs {
		kind := "out"
		switch r.Topic {
		case "late":
			kind = "late"
		case "dead":
			kind = "dead"
		}
		s = append(s, fmt.Sprintf("%s %s %s", kind, r.Key, r.Value))
	}
	return s
}

// run feeds the input in batches of size n, restarting the processor from
// its saved state after every restartEvery batches (0: never).
func run(t *testing.T, n, restartEvery int) []string {
	t.Helper()
	st := sdk.NewState(nil)
	p := &Processor{}
	if err := p.Configure("w", settings, st); err != nil {
		t.Fatal(err)
	}
	var out []sdk.Record
	recs := records()
	for i, b := 0, 0; i < len(recs); i, b = i+n, b+1 {
		if restartEvery > 0 && b > 0 && b%restartEvery == 0 {
			p = &Processor{}
			if err := p.Configure("w", settings, st); err != nil {
				t.Fatal(err)
			}
		}
		got, err := p.Process(context.Background(), recs[i:min(i+n, len(recs))], st)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return show(out)
}

func TestWindowExactOutput(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, len(input)} {
		for _, restart := range []int{0, 1, 2} {
			t.Run(fmt.Sprintf("batch%d-restart%d", n, restart), func(t *testing.T) {
				if got := run(t, n, restart); !reflect.DeepEqual(got, wantOut) {
					t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantOut, "\n"))
				}
			})
		}
	}
}

func TestWindowStateHoldsOpenWindows(t *testing.T) {
	st := sdk.NewState(nil)
	p := &Processor{}
	p.Configure("w", settings, st)
	p.Process(context.Background(), records(), st)
	// Open: a@[20,30) and a@[30,40); watermark 31s.
	if got := st.Keys(); !reflect.DeepEqual(got, []string{"w/20000/a", "w/30000/a", "wm"}) {
		t.Fatalf("state keys %v", got)
	}
	v, _ := st.Get("w/20000/a")
	var a acc
	json.Unmarshal(v, &a)
	if a.Count != 1 || a.Sum != 4 {
		t.Fatalf("window 20s: %+v", a)
	}
}

func TestWindowBadSettings(t *testing.T) {
	for _, s := range []sdk.Settings{{"window": "0s"}, {"window": "abc"}, {"grace": "-1s"}} {
		if err := (&Processor{}).Configure("w", s, sdk.NewState(nil)); err == nil {
			t.Errorf("settings %v accepted", s)
		}
	}
}
