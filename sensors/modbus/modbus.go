// Package modbus is katka's Modbus TCP input: it polls the holding and input
// registers of each configured device at the device's interval with
// github.com/simonvetter/modbus, decodes int16, uint16, int32, uint32 and float32
// values in the configured byte and word order, scales them and writes one JSON
// record per reading, keyed "<device>/<register>".
//
// A device that is down is reconnected with a capped exponential backoff; failed
// connects, requests, decodes and writes are counted in katka_modbus_errors_total and
// never stop the input. The connection's state changes are logged once each
// (linkstate: lost, back after N s), never per retry; refused requests and
// undecodable values are logged at most once per logEvery per device.
package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
)

const (
	// defaultPort is the Modbus TCP port used when a device URL has none.
	defaultPort = "502"
	// backoffMin is the first wait before reconnecting to a device that is down.
	backoffMin = 200 * time.Millisecond
	// backoffMax caps the wait between two connection attempts.
	backoffMax = 10 * time.Second
	// logEvery is the shortest time between two logged failures of one device.
	logEvery = 10 * time.Second
)

func init() { sensors.Add("modbus", factory) }

// factory builds one input per device when the Modbus input is enabled and ensures
// its topic.
func factory(cfg config.Sensors, env sensors.Env) ([]sensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	if len(c.Devices) == 0 {
		return nil, errors.New("enabled but no device is configured")
	}
	if _, err := env.Broker.EnsureTopic(c.Topic, c.Partitions); err != nil {
		return nil, fmt.Errorf("topic %s: %w", c.Topic, err)
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	ins := make([]sensors.Input, 0, len(c.Devices))
	for i, d := range c.Devices {
		dev, err := New(*c, d, w, env.Log)
		if err != nil {
			return nil, fmt.Errorf("devices[%d]: %w", i, err)
		}
		dev.link = env.Links.New(dev.linkOptions())
		ins = append(ins, dev)
	}
	return ins, nil
}

// Reading is the JSON value of one record.
type Reading struct {
	// Device is the device name.
	Device string `json:"device"`
	// Register is the register's name.
	Register string `json:"register"`
	// Value is the decoded value times scale plus offset.
	Value float64 `json:"value"`
	// Unit is the register's unit, left out when it has none.
	Unit string `json:"unit,omitempty"`
	// TS is when the device answered, in ms; also the record timestamp.
	TS time.Time `json:"ts"`
}

// Device polls one Modbus TCP device and writes its readings; it is a sensors.Input.
type Device struct {
	name       string
	url        string // tcp://host:port, as the client library takes it
	unitID     uint8
	interval   time.Duration
	timeout    time.Duration
	topic      string
	partitions int32
	blocks     []block
	nregs      int
	w          *sensors.Writer
	log        *slog.Logger
	libLog     *log.Logger

	client *mb.ModbusClient // nil while disconnected
	// link logs the connection's state changes once each (lost, back after N s).
	link *linkstate.Link

	failing    bool      // the last connect or poll failed
	lastLog    time.Time // when a failure was last logged
	suppressed int       // failures not logged since then
}

// New checks the device's config and returns the input polling it and writing
// through w; a nil log discards logs.
func New(cfg Config, dev DeviceConfig, w *sensors.Writer, lg *slog.Logger) (*Device, error) {
	if w == nil {
		return nil, errors.New("writer is nil")
	}
	if dev.Name == "" {
		return nil, errors.New("device name is empty")
	}
	if err := config.ValidTopicName(cfg.Topic); err != nil {
		return nil, fmt.Errorf("device %s: %w", dev.Name, err)
	}
	u, err := url.Parse(dev.URL)
	if err != nil || u.Scheme != "tcp" || u.Hostname() == "" {
		return nil, fmt.Errorf("device %s: url %q is not allowed (allowed: tcp://host:port)", dev.Name, dev.URL)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	if dev.UnitID < 0 || dev.UnitID > 255 {
		return nil, fmt.Errorf("device %s: unit_id %d is out of range (allowed: 0..255)", dev.Name, dev.UnitID)
	}
	interval := cfg.Interval
	if dev.Interval != 0 {
		interval = dev.Interval
	}
	if interval <= 0 {
		return nil, fmt.Errorf("device %s: interval %s must be positive", dev.Name, interval)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("device %s: timeout %s must be positive", dev.Name, cfg.Timeout)
	}
	if len(dev.Registers) == 0 {
		return nil, fmt.Errorf("device %s: no register is configured", dev.Name)
	}
	regs := make([]register, 0, len(dev.Registers))
	seen := make(map[string]bool)
	for _, rc := range dev.Registers {
		r, err := newRegister(rc)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", dev.Name, err)
		}
		if seen[r.name] {
			return nil, fmt.Errorf("device %s: register name %q is used twice", dev.Name, r.name)
		}
		seen[r.name] = true
		regs = append(regs, r)
	}
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("sensor", "modbus", "device", dev.Name)
	d := &Device{
		name:       dev.Name,
		url:        "tcp://" + net.JoinHostPort(u.Hostname(), port),
		unitID:     uint8(dev.UnitID),
		interval:   interval,
		timeout:    cfg.Timeout,
		topic:      cfg.Topic,
		partitions: cfg.Partitions,
		blocks:     plan(regs),
		nregs:      len(regs),
		w:          w,
		log:        lg,
		libLog:     log.New(libWriter{lg}, "", 0),
	}
	d.link = linkstate.New(d.linkOptions())
	// Show the series at 0 from the start, so a rate over them works from the first error.
	polls.WithLabelValues(d.name)
	readings.WithLabelValues(d.name)
	connected.WithLabelValues(d.name).Set(0)
	return d, nil
}

// Run polls the device every interval until ctx is done, then returns nil. While the
// device cannot be reached it retries with a backoff from backoffMin doubling up to
// backoffMax.
func (d *Device) Run(ctx context.Context) error {
	d.log.Info("modbus device polling", "url", d.url, "unit_id", d.unitID, "interval", d.interval,
		"registers", d.nregs, "requests_per_poll", len(d.blocks))
	defer d.log.Info("modbus device stopped")
	defer d.disconnect()
	backoff := backoffMin
	next := time.Now()
	for {
		if d.client == nil {
			if err := d.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				pollErrors.WithLabelValues(d.name, errConnect).Inc()
				d.link.Down(err)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, backoffMax)
				continue
			}
			backoff = backoffMin
			d.log.Debug("modbus device connected", "url", d.url)
		}
		n, err := d.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && d.failing {
			d.failing = false
			d.log.Info("modbus device recovered", "readings", n, "failures_not_logged", d.suppressed)
			d.suppressed = 0
		}
		next = next.Add(d.interval)
		if now := time.Now(); next.Before(now) {
			next = now // a poll took longer than the interval: poll again at once, skip the missed ones
		}
		if !sleep(ctx, time.Until(next)) {
			return nil
		}
	}
}

// Poll reads every register of the device once and writes the readings it got; it
// returns how many were written and the first error. A request that fails with a
// Modbus exception skips its registers; any other failure closes the connection,
// which Run reopens, since the stream can no longer be trusted.
func (d *Device) Poll(ctx context.Context) (int, error) {
	if d.client == nil {
		return 0, fmt.Errorf("device %s: not connected", d.name)
	}
	start := time.Now()
	polls.WithLabelValues(d.name).Inc()
	defer func() { pollSeconds.WithLabelValues(d.name).Observe(time.Since(start).Seconds()) }()
	var (
		recs    []broker.Record
		first   error
		linkErr error // a request without a valid answer
	)
	fail := func(kind string, err error) {
		pollErrors.WithLabelValues(d.name, kind).Inc()
		d.failed(kind, err)
		if first == nil {
			first = err
		}
	}
	for _, b := range d.blocks {
		words, err := d.read(b)
		if err != nil {
			err = fmt.Errorf("read %s: %w", b, err)
			kind := kindOf(err)
			if kind == errException {
				fail(kind, err) // the device answered, refusing this request
				continue
			}
			// No answer or a broken one: the link is down and the
			// connection is reopened.
			pollErrors.WithLabelValues(d.name, kind).Inc()
			d.link.Down(err)
			linkErr = err
			if first == nil {
				first = err
			}
			d.disconnect()
			break
		}
		ts := time.Now().UTC().Truncate(time.Millisecond) // record timestamps are ms
		for _, r := range b.regs {
			off := int(r.address) - int(b.start)
			if off < 0 || off+r.words > len(words) { // read checks the count; never index past it
				fail(errProtocol, fmt.Errorf("read %s: %d registers in the response, register %s needs %d..%d", b, len(words), r.name, off, off+r.words-1))
				continue
			}
			v, err := r.decode(words[off : off+r.words])
			if err != nil {
				fail(errDecode, err)
				continue
			}
			value, err := json.Marshal(Reading{Device: d.name, Register: r.name, Value: v, Unit: r.unit, TS: ts})
			if err != nil {
				fail(errDecode, fmt.Errorf("register %s: %w", r.name, err))
				continue
			}
			recs = append(recs, broker.Record{Key: []byte(d.name + "/" + r.name), Value: value, Timestamp: ts})
		}
	}
	if linkErr == nil {
		// Every request was answered: up (logged once, when it changes).
		// Only whole polls count, and after an outage only polls answered
		// for a second (linkstate's Settle), so a device that answers one
		// request, or one poll, and times out on the next stays down
		// instead of logging two lines per retry.
		d.link.Seen("url", d.url)
	}
	if len(recs) == 0 {
		return 0, first
	}
	if err := d.w.Write(ctx, d.topic, d.partitions, recs); err != nil {
		if ctx.Err() == nil {
			fail(errWrite, err)
		}
		return 0, first
	}
	readings.WithLabelValues(d.name).Add(float64(len(recs)))
	return len(recs), first
}

// String names the request for errors: table and address range.
func (b block) String() string {
	table := "holding"
	if b.input {
		table = "input"
	}
	return fmt.Sprintf("%s registers %d..%d", table, b.start, int(b.start)+int(b.count)-1)
}

// read sends one request for block b and returns the register values. A panic of
// the client library on a device's answer is turned into a protocol error.
func (d *Device) read(b block) (words []uint16, err error) {
	defer func() {
		if p := recover(); p != nil {
			words, err = nil, fmt.Errorf("%w: client library panicked: %v", mb.ErrProtocolError, p)
		}
	}()
	t := mb.HOLDING_REGISTER
	if b.input {
		t = mb.INPUT_REGISTER
	}
	words, err = d.client.ReadRegisters(b.start, b.count, t)
	if err == nil && len(words) != int(b.count) {
		err = fmt.Errorf("%w: %d registers in the response, want %d", mb.ErrProtocolError, len(words), b.count)
	}
	return words, err
}

// connect opens the TCP connection; it gives up when ctx is done, leaving a dial in
// progress to close its connection on its own.
func (d *Device) connect(ctx context.Context) error {
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: d.url, Timeout: d.timeout, Logger: d.libLog})
	if err != nil {
		return fmt.Errorf("connect %s: %w", d.url, err)
	}
	if err := c.SetUnitId(d.unitID); err != nil {
		return fmt.Errorf("connect %s: unit id %d: %w", d.url, d.unitID, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Open() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("connect %s: %w", d.url, err)
		}
	case <-ctx.Done():
		go func() {
			if <-done == nil {
				c.Close()
			}
		}()
		return ctx.Err()
	}
	d.client = c
	connected.WithLabelValues(d.name).Set(1)
	return nil
}

// disconnect closes the connection, if open.
func (d *Device) disconnect() {
	if d.client == nil {
		return
	}
	if err := d.client.Close(); err != nil {
		d.log.Debug("modbus close", "err", err)
	}
	d.client = nil
	connected.WithLabelValues(d.name).Set(0)
}

// linkOptions describe the device's link: modbus/<device name>, retried
// with the input's backoff.
func (d *Device) linkOptions() linkstate.Options {
	return linkstate.Options{Name: "modbus/" + d.name, Log: d.log, RetryMin: backoffMin, RetryMax: backoffMax}
}

// failed logs a failure: always when the device was healthy until now, then at most
// once per logEvery, with the number of failures not logged in between.
func (d *Device) failed(kind string, err error, attrs ...any) {
	now := time.Now()
	if d.failing && now.Sub(d.lastLog) < logEvery {
		d.suppressed++
		return
	}
	d.failing = true
	d.lastLog = now
	attrs = append(attrs, "kind", kind, "err", err, "failures_not_logged", d.suppressed)
	d.suppressed = 0
	d.log.Warn("modbus device failed", attrs...)
}

// exceptions are the errors of a device that answered with a Modbus exception: the
// connection is fine, the request was refused.
var exceptions = []error{
	mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue,
	mb.ErrServerDeviceFailure, mb.ErrAcknowledge, mb.ErrServerDeviceBusy,
	mb.ErrMemoryParityError, mb.ErrGWPathUnavailable, mb.ErrGWTargetFailedToRespond,
}

// kindOf classifies a failed request for the errors metric.
func kindOf(err error) string {
	for _, e := range exceptions {
		if errors.Is(err, e) {
			return errException
		}
	}
	var me mb.Error
	switch {
	case errors.Is(err, mb.ErrRequestTimedOut), errors.Is(err, os.ErrDeadlineExceeded):
		return errTimeout
	case errors.As(err, &me):
		return errProtocol
	}
	return errIO
}

// sleep waits for d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// libWriter turns the client library's log lines into debug records of lg.
type libWriter struct{ lg *slog.Logger }

// Write logs one line of the library.
func (w libWriter) Write(p []byte) (int, error) {
	w.lg.Debug("modbus client", "line", strings.TrimSpace(string(p)))
	return len(p), nil
}
