package opcua

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/sensors"
)

// Error kinds of katka_opcua_errors_total.
const (
	errConnect   = "connect"   // the server could not be reached or the secure channel failed
	errAuth      = "auth"      // the server refused the identity or certificate
	errSubscribe = "subscribe" // the subscription or its monitored items could not be created
	errNotify    = "notify"    // the client reported an error on the subscription (it reconnects)
	errItem      = "item"      // the server refused a monitored item (e.g. unknown node)
	errWrite     = "write"     // the records could not be written to katka (retried)
)

// Metrics of the OPC UA input, labelled by server name.
var (
	notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_opcua_notifications_total",
		Help: "Data-change notifications received from an OPC UA server.",
	}, []string{"server"})
	records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_opcua_records_total",
		Help: "Records written to katka from an OPC UA server.",
	}, []string{"server"})
	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_opcua_errors_total",
		Help: "Errors of an OPC UA server connection by kind (connect, auth, subscribe, notify, item, write).",
	}, []string{"server", "kind"})
	connected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "katka_opcua_connected",
		Help: "1 while the session with the OPC UA server is open.",
	}, []string{"server"})
	subscribes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_opcua_subscribes_total",
		Help: "Subscriptions created by katka on an OPC UA server (more than one: the client had given up and katka connected anew).",
	}, []string{"server"})
	reconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_opcua_reconnects_total",
		Help: "Reconnections of the OPC UA client that restored the session and subscription (transfer or re-creation).",
	}, []string{"server"})
)

func init() {
	sensors.AddCollectors(notifications, records, errorsTotal, connected, subscribes, reconnects)
}
