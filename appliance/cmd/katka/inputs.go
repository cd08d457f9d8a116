package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors/can"
	"github.com/katka-io/katka/sensors/modbus"
	"github.com/katka-io/katka/sensors/mqtt"
	"github.com/katka-io/katka/sensors/opcua"
	"github.com/katka-io/katka/sensors/simulated"
	"github.com/katka-io/katka/sensors/system"
)

// inputInfo is one configured input as GET /v1/status/inputs (and the web
// console's inputs page) shows it: what it reads and where it writes. No
// credentials: MQTT passwords and key files stay out.
type inputInfo struct {
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	Topics   []string `json:"topics"`
	Interval string   `json:"interval,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	// Links is the state of the input's links (up or down since when, the
	// last error): its MQTT broker, Modbus device, CAN interfaces, or its
	// writes to its topic.
	Links []linkstate.Snapshot `json:"links,omitempty"`
}

// inputsStatus lists the enabled inputs of the sensors config, each with the
// state of its links among links.
func inputsStatus(s config.Sensors, links []linkstate.Snapshot) []inputInfo {
	out := configuredInputs(s)
	for i := range out {
		in := &out[i]
		for _, l := range links {
			kind, name, _ := strings.Cut(l.Link, "/")
			if kind != in.Kind {
				continue
			}
			switch kind {
			case "simulated", "system": // their link is their topic
				if len(in.Topics) > 0 && name == in.Topics[0] {
					in.Links = append(in.Links, l)
				}
			case "can": // one input, a link per interface
				in.Links = append(in.Links, l)
			default:
				if name == in.Name {
					in.Links = append(in.Links, l)
				}
			}
		}
	}
	return out
}

// configuredInputs lists the enabled inputs of the sensors config.
func configuredInputs(s config.Sensors) []inputInfo {
	out := []inputInfo{}
	if c := simulated.ConfigOf(s); c.Enabled {
		out = append(out, inputInfo{Kind: "simulated", Name: "simulated", Source: fmt.Sprintf("%d simulated sensors", len(c.Sensors)),
			Topics: []string{c.Topic}, Interval: c.Interval.String()})
	}
	if c := system.ConfigOf(s); c.Enabled {
		out = append(out, inputInfo{Kind: "system", Name: "system", Source: "this host", Topics: []string{c.Topic},
			Interval: c.Interval.String(), Detail: fmt.Sprint(c.Collect)})
	}
	if c := mqtt.ConfigOf(s); c.Enabled {
		var topics []string
		for _, r := range c.Rules {
			topics = append(topics, r.Filter+" -> "+r.Topic)
		}
		for _, b := range c.Brokers {
			name := b.Name
			if name == "" {
				name = redactURL(b.URL)
			}
			out = append(out, inputInfo{Kind: "mqtt", Name: name, Source: redactURL(b.URL), Topics: topics, Detail: fmt.Sprintf("client id %s, QoS %d", b.ClientID, c.QoS)})
		}
	}
	if c := modbus.ConfigOf(s); c.Enabled {
		for _, d := range c.Devices {
			iv := d.Interval
			if iv == 0 {
				iv = c.Interval
			}
			out = append(out, inputInfo{Kind: "modbus", Name: d.Name, Source: fmt.Sprintf("%s unit %d", redactURL(d.URL), d.UnitID), Topics: []string{c.Topic},
				Interval: iv.String(), Detail: fmt.Sprintf("%d registers", len(d.Registers))})
		}
	}
	if c := opcua.ConfigOf(s); c.Enabled {
		for _, sv := range c.Servers {
			out = append(out, inputInfo{Kind: "opcua", Name: sv.Name, Source: redactURL(sv.Endpoint), Topics: []string{c.Topic},
				Detail: fmt.Sprintf("%d monitored items, security %s/%s", len(sv.Nodes), sv.SecurityPolicy, sv.SecurityMode)})
		}
	}
	if c := can.ConfigOf(s); c.Enabled {
		src := fmt.Sprint(c.Interfaces)
		if len(c.Interfaces) == 0 {
			src = fmt.Sprintf("replay of %v", c.Replay.Files)
		}
		out = append(out, inputInfo{Kind: "can", Name: "can", Source: src, Topics: []string{c.Topic}, Detail: "DBC " + c.DBCFile + ", rate " + c.Rate})
	}
	return out
}

// redactURL drops a password written into a URL (tcp://user:secret@host).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
