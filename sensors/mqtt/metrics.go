package mqtt

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/sensors"
)

// Metrics of the MQTT input, labelled by broker (the connection's name).
var (
	messagesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_mqtt_messages_in_total",
		Help: "MQTT messages received (redeliveries after a reconnect count again).",
	}, []string{"broker"})
	bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_mqtt_bytes_in_total",
		Help: "MQTT payload bytes received.",
	}, []string{"broker"})
	deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_mqtt_dead_lettered_total",
		Help: "MQTT messages written to the dead-letter topic, by reason.",
	}, []string{"broker", "reason"})
	ackLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "katka_mqtt_ack_latency_seconds",
		Help:    "Time from receipt of an MQTT message to its acknowledgement, after the record is durable.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14), // 100us .. ~6s
	}, []string{"broker"})
	batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "katka_mqtt_batch_messages",
		Help:    "Messages written and acknowledged together.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 .. 4096
	}, []string{"broker"})
	writeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_mqtt_write_errors_total",
		Help: "Failed writes of MQTT batches to katka (retried; nothing is acknowledged before it succeeds).",
	}, []string{"broker"})
	connected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "katka_mqtt_connected",
		Help: "1 while the connection to the MQTT broker is up and subscribed.",
	}, []string{"broker"})
	connects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_mqtt_connects_total",
		Help: "Connection attempts to the MQTT broker, by result (ok or error).",
	}, []string{"broker", "result"})
)

func init() {
	sensors.AddCollectors(messagesIn, bytesIn, deadLettered, ackLatency, batchSize, writeErrors, connected, connects)
}
