// Command noop is a test processor that returns nothing: for benchmarks of
// the call path (records in, acknowledgement out).
package main

import (
	"context"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{}

func (proc) Configure(string, sdk.Settings, *sdk.State) error { return nil }

func (proc) Process(context.Context, []sdk.Record, *sdk.State) ([]sdk.Record, error) {
	return nil, nil
}

func main() { sdk.Serve(proc{}) }
