package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors/mqtt"
)

// TestInputsStatusHidesSecrets: GET /v1/status/inputs lists the enabled
// inputs with where they read and write, never a password.
func TestInputsStatusHidesSecrets(t *testing.T) {
	s := config.Default().Sensors
	m := mqtt.ConfigOf(s)
	m.Enabled = true
	m.Brokers = []mqtt.BrokerConfig{{URL: "tcp://plc:hunter2@10.0.0.5:1883", ClientID: "gw", Password: "s3cret"}}
	m.Rules = []mqtt.RuleConfig{{Filter: "line/#", Topic: "plant.raw"}}
	got := inputsStatus(s)
	raw, _ := json.Marshal(got)
	if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "s3cret") {
		t.Fatalf("a password in the inputs status: %s", raw)
	}
	if len(got) != 2 || got[0].Kind != "simulated" || got[1].Kind != "mqtt" || got[1].Topics[0] != "line/# -> plant.raw" || !strings.Contains(got[1].Source, "10.0.0.5:1883") {
		t.Fatalf("inputs status: %s", raw)
	}
}
