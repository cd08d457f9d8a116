package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/katka-io/katka/plugins/sdk"
)

// Partitioner picks partition = field mod n when the field is an integer,
// else a hash (FNV-1a) of the field's text; records without the field (or not
// JSON) go by a hash of their key, or to fallback_partition when they have none.
type Partitioner struct {
	path     []string
	fallback int64
}

// Configure reads field (required; a.b for nested) and fallback_partition (default 0).
func (p *Partitioner) Configure(_ string, s sdk.Settings) error {
	f := s.String("field", "")
	if f == "" {
		return fmt.Errorf("setting field is required (the JSON field to route by, e.g. line)")
	}
	p.path = strings.Split(f, ".")
	var err error
	p.fallback, err = s.Int("fallback_partition", 0)
	return err
}

// Partition returns one partition per record.
func (p *Partitioner) Partition(_ context.Context, _ string, n int32, recs []sdk.Record) ([]int32, error) {
	if n < 1 {
		return nil, fmt.Errorf("topic has %d partitions", n)
	}
	out := make([]int32, len(recs))
	for i, r := range recs {
		out[i] = p.one(r, n)
	}
	return out, nil
}

func (p *Partitioner) one(r sdk.Record, n int32) int32 {
	var doc any
	if json.Unmarshal(r.Value, &doc) == nil {
		for _, k := range p.path {
			m, ok := doc.(map[string]any)
			if !ok {
				doc = nil
				break
			}
			doc = m[k]
		}
		switch v := doc.(type) {
		case float64:
			if v == math.Trunc(v) && !math.IsInf(v, 0) {
				x := int64(v) % int64(n)
				if x < 0 {
					x += int64(n)
				}
				return int32(x)
			}
			return hash(fmt.Sprint(v), n)
		case string:
			return hash(v, n)
		case nil:
		default:
			b, _ := json.Marshal(v)
			return hash(string(b), n)
		}
	}
	if r.Key != nil {
		return hash(string(r.Key), n)
	}
	return int32(((p.fallback % int64(n)) + int64(n)) % int64(n))
}

func hash(s string, n int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32() % uint32(n))
}
