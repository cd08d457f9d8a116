package modbus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/sensors"
)

// Error kinds of katka_modbus_errors_total.
const (
	errConnect   = "connect"   // the TCP connection could not be opened
	errTimeout   = "timeout"   // the device did not answer within modbus.timeout
	errException = "exception" // the device answered with a Modbus exception (e.g. illegal data address)
	errProtocol  = "protocol"  // a malformed, short or mismatched response
	errIO        = "io"        // the connection broke during a request
	errDecode    = "decode"    // a value that cannot be decoded (a float32 NaN or infinity)
	errWrite     = "write"     // the readings could not be written to katka
)

// Metrics of the Modbus input, labelled by device name.
var (
	polls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_modbus_polls_total",
		Help: "Polls of a Modbus device: one per interval while it is connected.",
	}, []string{"device"})
	pollErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_modbus_errors_total",
		Help: "Failed connects, requests, decodes and writes of a Modbus device, by kind (connect, timeout, exception, protocol, io, decode, write).",
	}, []string{"device", "kind"})
	readings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_modbus_readings_total",
		Help: "Register readings of a Modbus device written to katka.",
	}, []string{"device"})
	connected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "katka_modbus_connected",
		Help: "1 while the TCP connection to the Modbus device is open.",
	}, []string{"device"})
	pollSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "katka_modbus_poll_duration_seconds",
		Help:    "Time of one poll of a Modbus device: every read request and the write to katka.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12), // 0.5ms .. ~12s
	}, []string{"device"})
)

func init() {
	sensors.AddCollectors(polls, pollErrors, readings, connected, pollSeconds)
}
