// Command route is a test processor that copies every input record to each
// topic listed in its topics setting (comma-separated; an empty item means
// the instance's output topic), with the input's key and value.
package main

import (
	"context"
	"strings"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{ topics []string }

func (p *proc) Configure(_ string, s sdk.Settings, _ *sdk.State) error {
	p.topics = strings.Split(s.String("topics", ""), ",")
	return nil
}

func (p *proc) Process(_ context.Context, recs []sdk.Record, _ *sdk.State) ([]sdk.Record, error) {
	var out []sdk.Record
	for _, r := range recs {
		for _, t := range p.topics {
			out = append(out, sdk.Record{Topic: t, Key: r.Key, Value: r.Value})
		}
	}
	return out, nil
}

func main() { sdk.Serve(&proc{}) }
