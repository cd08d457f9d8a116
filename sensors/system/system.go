// Package system is katka's host metrics input: every interval it reads CPU, memory,
// disk, network and temperatures (where the host has sensors) with gopsutil and writes
// one JSON record keyed by the host name.
package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/sensors"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	katkasensors "github.com/katka-io/katka/sensors"
)

func init() { katkasensors.Add("system", factory) }

// factory builds the input when it is enabled and ensures its topic.
func factory(cfg config.Sensors, env katkasensors.Env) ([]katkasensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	if _, err := env.Broker.EnsureTopic(c.Topic, c.Partitions); err != nil {
		return nil, fmt.Errorf("topic %s: %w", c.Topic, err)
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	in, err := New(*c, w, env.Log)
	if err != nil {
		return nil, err
	}
	in.link = in.newLink(env.Links)
	return []katkasensors.Input{in}, nil
}

// Input reads the host's metrics every interval.
type Input struct {
	cfg  Config
	w    *katkasensors.Writer
	log  *slog.Logger
	host string
	// link logs when writes start failing (disk full, quota) and when they
	// work again, once each, with a reminder every 5 minutes in between.
	link *linkstate.Link
}

// newLink is the state of the input's writes to its topic (system/<topic>),
// kept in links (which may be nil).
func (in *Input) newLink(links *linkstate.Registry) *linkstate.Link {
	return links.New(linkstate.Options{Name: "system/" + in.cfg.Topic, Log: in.log, RetryMin: in.cfg.Interval, RetryMax: in.cfg.Interval})
}

// New checks cfg and returns the input writing through w; a nil log discards logs.
func New(cfg Config, w *katkasensors.Writer, log *slog.Logger) (*Input, error) {
	if w == nil {
		return nil, errors.New("writer is nil")
	}
	if err := config.ValidTopicName(cfg.Topic); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("interval %s must be positive", cfg.Interval)
	}
	for _, g := range cfg.Collect {
		if !slices.Contains([]string{"cpu", "memory", "disk", "network", "temperature"}, g) {
			return nil, fmt.Errorf("collect: %q is not known (allowed: cpu, memory, disk, network, temperature)", g)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	in := &Input{cfg: cfg, w: w, log: log.With("sensor", "system"), host: host}
	in.link = in.newLink(nil)
	return in, nil
}

// Reading is the JSON value of one record; groups not collected are left out.
type Reading struct {
	Host         string        `json:"host"`
	TS           time.Time     `json:"ts"`
	CPU          *CPU          `json:"cpu,omitempty"`
	Memory       *Memory       `json:"memory,omitempty"`
	Disks        []Disk        `json:"disks,omitempty"`
	Network      []Interface   `json:"network,omitempty"`
	Temperatures []Temperature `json:"temperatures,omitempty"`
	// Errors lists groups that could not be read this time, with the reason.
	Errors []string `json:"errors,omitempty"`
}

// CPU is overall utilisation since the previous reading and the load averages.
type CPU struct {
	Percent float64 `json:"percent"`
	Cores   int     `json:"cores"`
	Load1   float64 `json:"load1"`
	Load5   float64 `json:"load5"`
	Load15  float64 `json:"load15"`
}

// Memory is RAM and swap use in bytes.
type Memory struct {
	Total       uint64  `json:"total"`
	Available   uint64  `json:"available"`
	Used        uint64  `json:"used"`
	UsedPercent float64 `json:"used_percent"`
	SwapTotal   uint64  `json:"swap_total"`
	SwapUsed    uint64  `json:"swap_used"`
}

// Disk is one mounted file system.
type Disk struct {
	Path        string  `json:"path"`
	Total       uint64  `json:"total"`
	Free        uint64  `json:"free"`
	UsedPercent float64 `json:"used_percent"`
}

// Interface is one network interface's counters since boot.
type Interface struct {
	Name        string `json:"name"`
	BytesSent   uint64 `json:"bytes_sent"`
	BytesRecv   uint64 `json:"bytes_recv"`
	PacketsSent uint64 `json:"packets_sent"`
	PacketsRecv uint64 `json:"packets_recv"`
	Errors      uint64 `json:"errors"`
	Drops       uint64 `json:"drops"`
}

// Temperature is one hardware sensor in degrees Celsius.
type Temperature struct {
	Sensor  string  `json:"sensor"`
	Celsius float64 `json:"celsius"`
}

// Run writes one reading at once and then every interval until ctx is done.
func (in *Input) Run(ctx context.Context) error {
	in.log.Info("system input started", "interval", in.cfg.Interval, "collect", in.cfg.Collect)
	defer in.log.Info("system input stopped")
	tk := time.NewTicker(in.cfg.Interval)
	defer tk.Stop()
	for {
		r := in.Read(ctx)
		value, err := json.Marshal(r)
		if err == nil {
			err = in.w.Write(ctx, in.cfg.Topic, in.cfg.Partitions, []broker.Record{{Key: []byte(in.host), Value: value, Timestamp: r.TS}})
		}
		switch {
		case err == nil:
			in.link.Up()
		case ctx.Err() == nil:
			in.link.Down(fmt.Errorf("write reading: %w", err)) // once, then a reminder every 5 minutes
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// Read takes one reading of the configured groups; a group that fails is named in Errors.
func (in *Input) Read(ctx context.Context) Reading {
	r := Reading{Host: in.host, TS: time.Now().UTC().Truncate(time.Millisecond)} // record timestamps are ms
	fail := func(group string, err error) { r.Errors = append(r.Errors, group+": "+err.Error()) }
	for _, g := range in.cfg.Collect {
		switch g {
		case "cpu":
			c := &CPU{}
			if p, err := cpu.PercentWithContext(ctx, 0, false); err == nil && len(p) > 0 {
				c.Percent = p[0]
			} else if err != nil {
				fail("cpu", err)
			}
			c.Cores, _ = cpu.CountsWithContext(ctx, true)
			if l, err := load.AvgWithContext(ctx); err == nil {
				c.Load1, c.Load5, c.Load15 = l.Load1, l.Load5, l.Load15
			}
			r.CPU = c
		case "memory":
			v, err := mem.VirtualMemoryWithContext(ctx)
			if err != nil {
				fail("memory", err)
				continue
			}
			m := &Memory{Total: v.Total, Available: v.Available, Used: v.Used, UsedPercent: v.UsedPercent}
			if s, err := mem.SwapMemoryWithContext(ctx); err == nil {
				m.SwapTotal, m.SwapUsed = s.Total, s.Used
			}
			r.Memory = m
		case "disk":
			paths := in.cfg.DiskPaths
			if len(paths) == 0 {
				parts, err := disk.PartitionsWithContext(ctx, false)
				if err != nil {
					fail("disk", err)
				}
				for _, p := range parts {
					if !slices.Contains(paths, p.Mountpoint) {
						paths = append(paths, p.Mountpoint)
					}
				}
			}
			for _, p := range paths {
				u, err := disk.UsageWithContext(ctx, p)
				if err != nil {
					fail("disk "+p, err)
					continue
				}
				r.Disks = append(r.Disks, Disk{Path: p, Total: u.Total, Free: u.Free, UsedPercent: u.UsedPercent})
			}
		case "network":
			ifs, err := net.IOCountersWithContext(ctx, true)
			if err != nil {
				fail("network", err)
				continue
			}
			for _, s := range ifs {
				r.Network = append(r.Network, Interface{Name: s.Name, BytesSent: s.BytesSent, BytesRecv: s.BytesRecv,
					PacketsSent: s.PacketsSent, PacketsRecv: s.PacketsRecv, Errors: s.Errin + s.Errout, Drops: s.Dropin + s.Dropout})
			}
		case "temperature":
			ts, _ := sensors.TemperaturesWithContext(ctx) // partial results come with an error; none is fine
			for _, t := range ts {
				r.Temperatures = append(r.Temperatures, Temperature{Sensor: t.SensorKey, Celsius: t.Temperature})
			}
		}
	}
	return r
}
