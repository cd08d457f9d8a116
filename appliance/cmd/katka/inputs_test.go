package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
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
	got := inputsStatus(s, nil)
	raw, _ := json.Marshal(got)
	if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "s3cret") {
		t.Fatalf("a password in the inputs status: %s", raw)
	}
	if len(got) != 2 || got[0].Kind != "simulated" || got[1].Kind != "mqtt" || got[1].Topics[0] != "line/# -> plant.raw" || !strings.Contains(got[1].Source, "10.0.0.5:1883") {
		t.Fatalf("inputs status: %s", raw)
	}
}

// TestInputsStatusShowsLinks: each input row carries the state of its own
// links (a down MQTT broker with its error, the simulated topic up), and the
// link name of an unnamed broker has no password either.
func TestInputsStatusShowsLinks(t *testing.T) {
	s := config.Default().Sensors
	m := mqtt.ConfigOf(s)
	m.Enabled = true
	m.Brokers = []mqtt.BrokerConfig{{URL: "tcp://plc:hunter2@10.0.0.5:1883", ClientID: "gw"}, {Name: "line-2", URL: "tcp://10.0.0.6:1883", ClientID: "gw"}}
	m.Rules = []mqtt.RuleConfig{{Filter: "line/#", Topic: "plant.raw"}}
	links := linkstate.NewRegistry(nil)
	links.New(linkstate.Options{Name: "simulated/sensors.simulated"}).Up()
	links.New(linkstate.Options{Name: "mqtt/line-2"}).Down(errors.New("connection refused"))
	links.New(linkstate.Options{Name: "modbus/pump"}) // not configured: shown nowhere
	got := inputsStatus(s, links.Snapshot())
	raw, _ := json.Marshal(got)
	if len(got) != 3 || len(got[0].Links) != 1 || got[0].Links[0].State != linkstate.Up || len(got[1].Links) != 0 ||
		len(got[2].Links) != 1 || got[2].Links[0].LastError != "connection refused" {
		t.Fatalf("inputs status: %s", raw)
	}
	if !strings.Contains(string(raw), `"state":"down"`) {
		t.Fatalf("state not by name: %s", raw)
	}
}
