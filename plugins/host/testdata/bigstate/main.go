// Command bigstate is a test processor that stores, for every input record,
// a state value of value_bytes bytes under the key "k-<offset>", and outputs
// nothing: for the state size limits.
package main

import (
	"bytes"
	"context"
	"fmt"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{ n int64 }

func (p *proc) Configure(_ string, s sdk.Settings, _ *sdk.State) error {
	var err error
	p.n, err = s.Int("value_bytes", 100)
	return err
}

func (p *proc) Process(_ context.Context, recs []sdk.Record, st *sdk.State) ([]sdk.Record, error) {
	for _, r := range recs {
		st.Put(fmt.Sprintf("k-%d", r.Offset), bytes.Repeat([]byte{'s'}, int(p.n)))
	}
	return nil, nil
}

func main() { sdk.Serve(&proc{}) }
