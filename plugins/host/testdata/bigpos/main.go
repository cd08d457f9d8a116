// Command bigpos is a test source that emits one record with a position of
// pos_bytes bytes, then idles: for the source position size limit.
package main

import (
	"bytes"
	"context"

	"github.com/katka-io/katka/plugins/sdk"
)

type src struct{ n int64 }

func (s *src) Configure(_ string, set sdk.Settings) error {
	var err error
	s.n, err = set.Int("pos_bytes", 10)
	return err
}

func (s *src) Read(ctx context.Context, _ []byte, emit func([]sdk.Record, []byte) error) error {
	if err := emit([]sdk.Record{{Value: []byte("x")}}, bytes.Repeat([]byte{'p'}, int(s.n))); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func main() { sdk.Serve(&src{}) }
