// Command errpart is a test partitioner: it answers an error for a batch
// holding a record whose value is "fail", and partition 0 otherwise.
package main

import (
	"context"
	"errors"

	"github.com/katka-io/katka/plugins/sdk"
)

type part struct{}

func (part) Configure(string, sdk.Settings) error { return nil }

func (part) Partition(_ context.Context, _ string, _ int32, recs []sdk.Record) ([]int32, error) {
	for _, r := range recs {
		if string(r.Value) == "fail" {
			return nil, errors.New("refusing the record \"fail\"")
		}
	}
	return make([]int32, len(recs)), nil
}

func main() { sdk.Serve(part{}) }
