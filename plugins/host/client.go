package host

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	pb "github.com/katka-io/katka/plugins/proto"
	"github.com/katka-io/katka/plugins/sdk"
)

// Client is a directly driven processor plugin, outside any supervision: for
// benchmarks, tools and tests of a plugin.
type Client struct {
	p *proc
}

// Dial verifies and starts the processor plugin m and configures it with no settings.
func Dial(m Manifest, timeout time.Duration, log *slog.Logger) (*Client, error) {
	if m.Kind != sdk.KindProcessor {
		return nil, fmt.Errorf("plugin %s is a %s; Dial drives processors", m.Name, m.Kind)
	}
	p, err := startProc(m, timeout, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.configure(ctx, &pb.ConfigureRequest{Instance: m.Name}); err != nil {
		p.kill()
		return nil, fmt.Errorf("plugin %s: configure: %w", m.Name, err)
	}
	return &Client{p: p}, nil
}

// Process sends one batch and returns the output records.
func (c *Client) Process(ctx context.Context, recs []broker.Record) ([]sdk.Record, error) {
	in := make([]*pb.Record, len(recs))
	for i, r := range recs {
		in[i] = toProto(r, tp{"bench", 0})
	}
	resp, err := c.p.processor.Process(ctx, &pb.ProcessRequest{Records: in})
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	return sdk.FromProto(resp.GetRecords()), nil
}

// Close kills the plugin process.
func (c *Client) Close() { c.p.kill() }
