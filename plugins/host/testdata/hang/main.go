// Command hang is a test processor: it passes records through, but hangs for
// an hour on a record whose value is "hang" unless the file named by the
// marker setting exists (it creates it first, so the restarted plugin goes on).
package main

import (
	"context"
	"os"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

type proc struct{ marker string }

func (p *proc) Configure(_ string, s sdk.Settings, _ *sdk.State) error {
	p.marker = s.String("marker", "")
	return nil
}

func (p *proc) Process(ctx context.Context, recs []sdk.Record, _ *sdk.State) ([]sdk.Record, error) {
	for _, r := range recs {
		if string(r.Value) == "hang" && p.marker != "" {
			if _, err := os.Stat(p.marker); err != nil {
				_ = os.WriteFile(p.marker, nil, 0o644)
				sdk.Logger().Info("hanging now", "offset", r.Offset)
				time.Sleep(time.Hour)
			}
		}
	}
	out := make([]sdk.Record, len(recs))
	for i, r := range recs {
		out[i] = sdk.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	}
	return out, nil
}

func main() { sdk.Serve(&proc{}) }
