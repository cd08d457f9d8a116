package main

import (
	"fmt"
	"net/url"

	"github.com/katka-io/katka/appliance/config"
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
}

// inputsStatus lists the enabled inputs of the sensors config.
func inputsStatus(s config.Sensors) []inputInfo {
	out := []inputInfo{}
	if s.Simulated.Enabled {
		out = append(out, inputInfo{Kind: "simulated", Name: "simulated", Source: fmt.Sprintf("%d simulated sensors", len(s.Simulated.Sensors)),
			Topics: []string{s.Simulated.Topic}, Interval: s.Simulated.Interval.String()})
	}
	if s.System.Enabled {
		out = append(out, inputInfo{Kind: "system", Name: "system", Source: "this host", Topics: []string{s.System.Topic},
			Interval: s.System.Interval.String(), Detail: fmt.Sprint(s.System.Collect)})
	}
	if s.MQTT.Enabled {
		var topics []string
		for _, r := range s.MQTT.Rules {
			topics = append(topics, r.Filter+" -> "+r.Topic)
		}
		for _, b := range s.MQTT.Brokers {
			name := b.Name
			if name == "" {
				name = redactURL(b.URL)
			}
			out = append(out, inputInfo{Kind: "mqtt", Name: name, Source: redactURL(b.URL), Topics: topics, Detail: fmt.Sprintf("client id %s, QoS %d", b.ClientID, s.MQTT.QoS)})
		}
	}
	if s.Modbus.Enabled {
		for _, d := range s.Modbus.Devices {
			iv := d.Interval
			if iv == 0 {
				iv = s.Modbus.Interval
			}
			out = append(out, inputInfo{Kind: "modbus", Name: d.Name, Source: fmt.Sprintf("%s unit %d", redactURL(d.URL), d.UnitID), Topics: []string{s.Modbus.Topic},
				Interval: iv.String(), Detail: fmt.Sprintf("%d registers", len(d.Registers))})
		}
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
