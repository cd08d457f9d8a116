package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/katka-io/katka/firmware"
)

// Announcement is the retained MQTT message for an available artefact.
type Announcement struct {
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	Size     int64             `json:"size"`
	SHA256   string            `json:"sha256"`
	URL      string            `json:"url"`
	Selector firmware.Selector `json:"selector"`
	Expires  time.Time         `json:"expires"`
	// Created starts the rollout schedule; Waves and OpenWaves let a device
	// decide whether it is in an open wave (firmware.Bucket of name and its id).
	Created   time.Time       `json:"created"`
	Waves     []firmware.Wave `json:"waves,omitempty"`
	OpenWaves int             `json:"open_waves,omitempty"`
	// Paused: the publisher holds the rollout; devices should not start it.
	Paused bool `json:"paused,omitempty"`
}

// announcer keeps one retained announcement per hardware class and artefact
// name (the highest available version) and takes device feedback.
type announcer struct {
	s    *Store
	cl   mqtt.Client
	sent map[string]string // topic -> payload published
}

func newAnnouncer(s *Store) *announcer {
	a := &announcer{s: s, sent: map[string]string{}}
	c := s.o.Config.MQTT
	opts := mqtt.NewClientOptions().AddBroker(c.Broker).SetClientID(c.ClientID).SetUsername(c.Username).SetPassword(c.Password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10 * time.Second).
		SetCleanSession(true).SetOrderMatters(false)
	opts.SetOnConnectHandler(func(cl mqtt.Client) {
		s.log.Info("firmware MQTT connected", "broker", c.Broker)
		cl.Subscribe(c.FeedbackTopic, 1, func(_ mqtt.Client, msg mqtt.Message) {
			levels := strings.Split(msg.Topic(), "/")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := s.recordFeedback(ctx, msg.Payload(), "mqtt", levels[len(levels)-1]); err != nil {
				s.log.Warn("firmware feedback refused", "topic", msg.Topic(), "err", err)
			}
		})
		// A new session (the broker may have lost retained messages): send all again.
		a.resend()
	})
	a.cl = mqtt.NewClient(opts)
	return a
}

func (a *announcer) resend() {
	select {
	case a.s.changed <- struct{}{}:
	default:
	}
	a.s.mu.Lock()
	a.sent = map[string]string{}
	a.s.mu.Unlock()
}

func (a *announcer) run(ctx context.Context) {
	a.cl.Connect()
	defer a.cl.Disconnect(250)
	for {
		if a.cl.IsConnectionOpen() {
			a.publish()
		}
		select {
		case <-ctx.Done():
			return
		case <-a.s.changed:
		case <-time.After(5 * time.Second):
		}
	}
}

// want computes topic -> payload of every retained announcement that should exist.
func (a *announcer) want() map[string]string {
	s := a.s
	base := s.o.Config.BaseURL
	if base == "" {
		base = "http://" + s.o.HTTPAddr
	}
	best := map[string]*artefact{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	for _, art := range s.arts {
		if art.state != StateAvailable || !now.Before(art.m.Expires) {
			continue
		}
		if b := best[art.m.Name]; b == nil || firmware.CompareVersions(art.m.Version, b.m.Version) > 0 {
			best[art.m.Name] = art
		}
	}
	out := map[string]string{}
	for _, art := range best {
		m := art.m
		payload, _ := json.Marshal(Announcement{Name: m.Name, Version: m.Version, Size: m.Size, SHA256: m.SHA256,
			URL: strings.TrimRight(base, "/") + "/v1/firmware/" + m.Name + "/" + m.Version, Selector: m.Selector, Expires: m.Expires,
			Created: m.Created, Waves: m.Waves, OpenWaves: m.OpenWaves(s.now()), Paused: m.Paused})
		classes := m.Selector.Hardware
		if len(classes) == 0 {
			classes = []string{"all"}
		}
		for _, hw := range classes {
			t := strings.NewReplacer("{hardware}", hw, "{name}", m.Name).Replace(s.o.Config.MQTT.AnnounceTopic)
			out[t] = string(payload)
		}
	}
	return out
}

func (a *announcer) publish() {
	want := a.want()
	a.s.mu.RLock()
	sent := make(map[string]string, len(a.sent))
	for k, v := range a.sent {
		sent[k] = v
	}
	a.s.mu.RUnlock()
	for t, p := range want {
		if sent[t] == p {
			continue
		}
		tok := a.cl.Publish(t, 1, true, p)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			a.s.log.Warn("firmware announcement not published; retrying", "topic", t, "err", tok.Error())
			continue
		}
		a.s.m.announced.Inc()
		a.s.log.Info("firmware announced", "topic", t)
		a.s.mu.Lock()
		a.sent[t] = p
		a.s.mu.Unlock()
	}
	for t := range sent {
		if _, ok := want[t]; ok {
			continue
		}
		// Nothing available for this topic any more (evicted): clear it.
		if tok := a.cl.Publish(t, 1, true, []byte{}); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			a.s.mu.Lock()
			delete(a.sent, t)
			a.s.mu.Unlock()
		}
	}
}
