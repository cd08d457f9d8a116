package can

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/sensors"
)

// Metrics of the CAN input. The source label is a SocketCAN interface name or
// replay:<file name>, so it is bounded by the config.
var (
	framesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_frames_total",
		Help: "CAN frames read, by source (interface, or replay:<file>).",
	}, []string{"source"})
	framesUnknown = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_frames_unknown_total",
		Help: "CAN frames whose id is not in the DBC file (not written).",
	}, []string{"source"})
	framesSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_frames_skipped_total",
		Help: "Remote, error and CAN FD frames (not decoded).",
	}, []string{"source"})
	deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_dead_lettered_total",
		Help: "Frames shorter than the DBC says and log lines that are not candump -l, written to the dead-letter topic.",
	}, []string{"source"})
	suppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_signals_suppressed_total",
		Help: "Signal values not written because of their rate (on_change, interval, off).",
	}, []string{"source"})
	recordsOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_can_records_total",
		Help: "Records written to katka topics by the CAN input.",
	}, []string{"topic"})
	writeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "katka_can_write_errors_total",
		Help: "Failed writes of the CAN input to katka (retried).",
	})
	interfaceUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "katka_can_interface_up",
		Help: "1 while the SocketCAN interface is open.",
	}, []string{"interface"})
)

func init() {
	sensors.AddCollectors(framesIn, framesUnknown, framesSkipped, deadLettered, suppressed, recordsOut, writeErrors, interfaceUp)
}
