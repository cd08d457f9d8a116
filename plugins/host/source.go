package host

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "github.com/katka-io/katka/plugins/proto"
)

// readSource streams batches from a source, writes each to the output topic
// and then stores the batch's position, so a restart resumes after the last
// stored batch (at least once). The stream has no call timeout: a tailing
// source may rightly be idle for hours; its exit ends the stream.
func (in *instance) readSource(ctx context.Context, p *proc) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.source.Read(sctx, &pb.ReadRequest{Position: in.ck.position})
	if err != nil {
		return fmt.Errorf("plugin %s: read: %w", in.cfg.Name, err)
	}
	for {
		b, err := stream.Recv()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("plugin %s: source ended its stream", in.cfg.Name)
		}
		if err != nil {
			in.h.m.errors.With(withReason(in.labels, "exited")).Inc()
			return fmt.Errorf("plugin %s: read: %w", in.cfg.Name, err)
		}
		in.h.m.recordsIn.With(in.labels).Add(float64(len(b.GetRecords())))
		pos := b.GetPosition()
		if pos == nil {
			pos = []byte{}
		}
		// A position that cannot be stored fails the batch before it is
		// written: it would be written again after every restart.
		if err := in.h.store.check(in.cfg.Name, nil, pos); err != nil {
			return in.badOutput(err)
		}
		if err := in.produce(ctx, b.GetRecords()); err != nil {
			return err
		}
		if err := in.commitRetry(ctx, nil, nil, pos); err != nil {
			return err
		}
		in.ck.position = pos
	}
}
