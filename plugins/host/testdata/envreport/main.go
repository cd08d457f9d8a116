// Command envreport is a test processor that answers every batch with its own
// environment, one record per variable ("NAME=value"): tests check what a
// plugin is started with.
package main

import (
	"context"
	"os"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{}

func (proc) Configure(string, sdk.Settings, *sdk.State) error { return nil }

func (proc) Process(context.Context, []sdk.Record, *sdk.State) ([]sdk.Record, error) {
	var out []sdk.Record
	for _, kv := range os.Environ() {
		out = append(out, sdk.Record{Value: []byte(kv)})
	}
	return out, nil
}

func main() { sdk.Serve(proc{}) }
