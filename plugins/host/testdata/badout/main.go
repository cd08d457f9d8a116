// Command badout is a test processor that answers with badly addressed
// records: an invalid topic name, a partition out of range, a null key.
package main

import (
	"context"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{}

func (proc) Configure(string, sdk.Settings, *sdk.State) error { return nil }

func (proc) Process(_ context.Context, recs []sdk.Record, _ *sdk.State) ([]sdk.Record, error) {
	var out []sdk.Record
	for _, r := range recs {
		out = append(out,
			sdk.Record{Topic: "no such/topic!", Value: r.Value},
			sdk.Record{Partition: 99, PartitionSet: true, Key: r.Key, Value: r.Value},
			sdk.Record{Value: r.Value})
	}
	return out, nil
}

func main() { sdk.Serve(proc{}) }
