package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Clients compared; the keys of figures are op/mode/size/client.
const (
	cKgo  = "katka-kgo"
	cKcat = "katka-kcat"
	cJS   = "jetstream"
)

// modes maps katka's storage.fsync to nats-server's sync_interval with the
// same durability: fsync before every acknowledgement, or every second.
var modes = []struct{ katka, nats, name string }{
	{"always", "always", "always"},
	{"interval", "1s", "interval 1s"},
}

// sizes are the record value sizes compared.
var sizes = []int{100, 1024}

// figures holds per-run values by key; index i of each is run i (0 when that
// run failed).
type figures map[string]samples

func (f figures) set(key string, run int, v float64) {
	s := f[key]
	for len(s) <= run {
		s = append(s, 0)
	}
	s[run] = v
	f[key] = s
}

func key(op, mode string, size int, client string) string {
	return fmt.Sprintf("%s/%s/%d/%s", op, mode, size, client)
}

// comparison is the katka vs JetStream part of the report.
type comparison struct {
	rates   figures // records/s
	records figures // records per produce run (fewer than asked when the limit cut it)
	hwm     figures // peak RSS (MB) of the server after the produce runs
}

// compare runs, for every run, size and mode, katka (kgo and kcat) and
// JetStream one after the other on fresh data directories. Produce is timed
// in each mode; consume reads the records written in interval mode, once
// with the server started in interval mode and once, restarted on the same
// data, in always mode, so both consume the same number of records.
func compare(ctx context.Context, e *env) (*comparison, error) {
	c := &comparison{rates: figures{}, records: figures{}, hwm: figures{}}
	for run := 0; run < e.runs; run++ {
		for _, size := range sizes {
			n := e.n100
			if size != 100 {
				n = e.n1k
			}
			// Alternate who goes first so drift in the machine's load hits both.
			order := []func() error{
				func() error { return c.katkaRound(ctx, e, run, size, n) },
				func() error { return c.natsRound(ctx, e, run, size, n) },
			}
			if run%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, f := range order {
				if err := f(); err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					e.errors = append(e.errors, fmt.Sprintf("run %d, %d B: %v", run+1, size, err))
					logf("ERROR %v", err)
				}
			}
		}
	}
	return c, nil
}

// measure records one result under key and logs it.
func (c *comparison) measure(run int, k string, r result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	c.rates.set(k, run, r.rate())
	c.records.set(k, run, float64(r.records))
	logf("run %d %-40s %10d records %8.2f s %12s records/s", run+1, k, r.records, r.elapsed.Seconds(), thousands(r.rate()))
	return nil
}

// katkaRound produces with kgo and kcat in both modes, consumes in both.
func (c *comparison) katkaRound(ctx context.Context, e *env, run, size int, n int64) error {
	base := filepath.Join(e.work, fmt.Sprintf("katka-r%d-%d", run, size))
	defer func() {
		for _, m := range modes {
			os.RemoveAll(base + "-" + m.katka)
		}
	}()
	for _, m := range modes {
		dir := base + "-" + m.katka
		k, err := startKatka(e, dir, m.katka)
		if err != nil {
			return err
		}
		err = func() error {
			defer k.stop()
			r, err := kgoProduce(ctx, k.kafka, "kgo", n, size, e.limit)
			if err := c.measure(run, key("produce", m.name, size, cKgo), r, err); err != nil {
				return err
			}
			if hwm, err := statusMB(k.pid(), "VmHWM"); err == nil {
				c.hwm.set(key("hwm", m.name, size, cKgo), run, hwm)
			}
			r, err = kcatProduce(ctx, e, k.kafka, "kcat", n, size)
			return c.measure(run, key("produce", m.name, size, cKcat), r, err)
		}()
		if err != nil {
			return err
		}
	}
	// Consume what interval mode wrote, under each mode.
	for _, m := range []struct{ fsync, name string }{{"interval", modes[1].name}, {"always", modes[0].name}} {
		k, err := startKatka(e, base+"-interval", m.fsync)
		if err != nil {
			return err
		}
		err = func() error {
			defer k.stop()
			r, err := kgoConsume(ctx, k.kafka, "kgo", n)
			if err := c.measure(run, key("consume", m.name, size, cKgo), r, err); err != nil {
				return err
			}
			r, err = kcatConsume(ctx, k.kafka, "kcat", n)
			return c.measure(run, key("consume", m.name, size, cKcat), r, err)
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// natsRound is katkaRound for JetStream with nats.go.
func (c *comparison) natsRound(ctx context.Context, e *env, run, size int, n int64) error {
	base := filepath.Join(e.work, fmt.Sprintf("nats-r%d-%d", run, size))
	defer func() {
		for _, m := range modes {
			os.RemoveAll(base + "-" + m.katka)
		}
	}()
	for _, m := range modes {
		s, err := startNATS(e, base+"-"+m.katka, m.nats)
		if err != nil {
			return err
		}
		r, err := natsProduce(ctx, s.url, n, size, e.limit)
		if hwm, herr := statusMB(s.pid(), "VmHWM"); herr == nil && err == nil {
			c.hwm.set(key("hwm", m.name, size, cJS), run, hwm)
		}
		s.stop()
		if err := c.measure(run, key("produce", m.name, size, cJS), r, err); err != nil {
			return err
		}
	}
	for _, m := range []struct{ sync, name string }{{"1s", modes[1].name}, {"always", modes[0].name}} {
		s, err := startNATS(e, base+"-interval", m.sync)
		if err != nil {
			return err
		}
		r, err := natsConsume(ctx, s.url, int64(c.records[key("produce", modes[1].name, size, cJS)][run]))
		s.stop()
		if err := c.measure(run, key("consume", m.name, size, cJS), r, err); err != nil {
			return err
		}
	}
	return nil
}
