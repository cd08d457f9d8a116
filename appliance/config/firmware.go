package config

import (
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Firmware configures the edge firmware store: it verifies signed artefacts
// that arrive in the manifest and chunk topics (brought down from the central
// cluster by sync.downlink), keeps them under a quota and serves them to
// devices over HTTP, announcing them over MQTT.
type Firmware struct {
	// Enabled turns the firmware store on.
	Enabled bool `yaml:"enabled"`
	// RootFile is the pinned root of trust (root.json from `katka firmware
	// keygen`); required when enabled. Later roots arrive in the manifest topic.
	RootFile string `yaml:"root_file"`
	// Dir holds verified artefacts; "" means <data_dir>/firmware.
	Dir string `yaml:"dir"`
	// Quota caps the bytes of all artefacts kept; the oldest-unused available
	// artefact is evicted to make room, and a bigger one is rejected.
	Quota ByteSize `yaml:"quota"`
	// ManifestTopic, ChunkTopic are the local topics read (created if missing).
	ManifestTopic string `yaml:"manifest_topic"`
	ChunkTopic    string `yaml:"chunk_topic"`
	// StatusTopic receives device feedback (mirror it up with sync.uplink).
	StatusTopic string `yaml:"status_topic"`
	// BaseURL is where devices fetch artefacts, put in announcements; "" means
	// http://<http.addr>.
	BaseURL string `yaml:"base_url"`
	// MQTT announces available artefacts and takes device feedback.
	MQTT FirmwareMQTT `yaml:"mqtt"`
	// SelfUpdate installs katka artefacts for this gateway's platform
	// (firmware/README.md, "Self-update"); needs `katka supervise`.
	SelfUpdate SelfUpdate `yaml:"self_update"`
}

// SelfUpdate configures katka's A/B self-update: an available artefact named
// <name>-<platform> (e.g. katka-linux-arm64) with a higher version than the
// running one is staged beside the binary, started by `katka supervise` for
// a trial, committed once healthy within HealthWindow, else rolled back.
type SelfUpdate struct {
	// Enabled turns self-update on (the store must be enabled too).
	Enabled bool `yaml:"enabled"`
	// Name is the artefact name prefix: artefacts are <name>-<platform>.
	Name string `yaml:"name"`
	// HealthWindow is how long a new binary may take to report healthy.
	HealthWindow time.Duration `yaml:"health_window"`
	// MaxAttempts bounds the trial starts of one version (a power cut
	// during a trial costs one) before it is recorded as bad.
	MaxAttempts int `yaml:"max_attempts"`
	// Dir holds the self-update state and markers; "" is <data_dir>/selfupdate.
	Dir string `yaml:"dir"`
	// Binary is the katka binary that is replaced; "" is the running
	// supervisor's executable. Its directory must be writable.
	Binary string `yaml:"binary"`
}

// FirmwareMQTT is the MQTT side of the firmware store.
type FirmwareMQTT struct {
	// Broker is the MQTT broker URL (tcp://host:port); "" turns MQTT off.
	Broker string `yaml:"broker"`
	// ClientID of katka's firmware MQTT client.
	ClientID string `yaml:"client_id"`
	// Username and Password log in to the broker (optional).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// AnnounceTopic is where a retained announcement goes per hardware class
	// and artefact: {hardware} ("all" when the selector names none) and {name}
	// are replaced.
	AnnounceTopic string `yaml:"announce_topic"`
	// FeedbackTopic is the MQTT topic filter devices publish feedback to.
	FeedbackTopic string `yaml:"feedback_topic"`
}

func defaultFirmware() Firmware {
	return Firmware{
		Quota:         1 * GiB,
		ManifestTopic: "firmware.manifests",
		ChunkTopic:    "firmware.chunks",
		StatusTopic:   "firmware.status",
		MQTT: FirmwareMQTT{
			ClientID:      "katka-firmware",
			AnnounceTopic: "katka/firmware/{hardware}/{name}",
			FeedbackTopic: "katka/firmware/feedback/#",
		},
		SelfUpdate: SelfUpdate{Name: "katka", HealthWindow: 2 * time.Minute, MaxAttempts: 2},
	}
}

var selfUpdateNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,60}$`)

func (v *validator) selfUpdate(path string, f Firmware) {
	s := f.SelfUpdate
	if !selfUpdateNameRE.MatchString(s.Name) {
		v.add(path+".name", "%q is not an artefact name prefix (allowed: 1-60 of a-z A-Z 0-9 . _ -)", s.Name)
	}
	if s.HealthWindow < time.Second || s.HealthWindow > time.Hour {
		v.add(path+".health_window", "%s is out of range (allowed: 1s..1h)", s.HealthWindow)
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > 10 {
		v.add(path+".max_attempts", "%d is out of range (allowed: 1..10)", s.MaxAttempts)
	}
	if s.Enabled && !f.Enabled {
		v.add(path+".enabled", "needs firmware.enabled: the artefacts come from the firmware store")
	}
}

func (v *validator) firmware(path string, f Firmware) {
	for _, t := range []struct{ key, name string }{{"manifest_topic", f.ManifestTopic}, {"chunk_topic", f.ChunkTopic}, {"status_topic", f.StatusTopic}} {
		if err := ValidTopicName(t.name); err != nil {
			v.add(path+"."+t.key, "%v", err)
		}
	}
	if f.ManifestTopic == f.ChunkTopic {
		v.add(path+".chunk_topic", "%q is also the manifest topic (allowed: two different topics)", f.ChunkTopic)
	}
	if f.Quota < 1*MiB {
		v.add(path+".quota", "%s is too small (allowed: at least 1MiB)", f.Quota)
	}
	v.selfUpdate(path+".self_update", f)
	if f.Enabled && f.RootFile == "" {
		v.add(path+".root_file", "must be set when firmware is enabled (root.json from `katka firmware keygen`)")
	}
	if f.BaseURL != "" {
		if u, err := url.Parse(f.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(path+".base_url", "%q is not an http(s) URL (e.g. http://192.168.1.10:8092)", f.BaseURL)
		}
	}
	if b := f.MQTT.Broker; b != "" {
		if u, err := url.Parse(b); err != nil || u.Host == "" || !strings.Contains("tcp ssl tls mqtt mqtts ws wss", u.Scheme) || u.Scheme == "" {
			v.add(path+".mqtt.broker", "%q is not a broker URL (allowed schemes: tcp, ssl, tls, mqtt, mqtts, ws, wss; e.g. tcp://127.0.0.1:1883)", b)
		}
		if f.MQTT.ClientID == "" {
			v.add(path+".mqtt.client_id", "must not be empty with an MQTT broker")
		}
		if !strings.Contains(f.MQTT.AnnounceTopic, "{name}") || strings.ContainsAny(f.MQTT.AnnounceTopic, "+#") {
			v.add(path+".mqtt.announce_topic", "%q must contain {name} and no wildcards (e.g. katka/firmware/{hardware}/{name})", f.MQTT.AnnounceTopic)
		}
		if f.MQTT.FeedbackTopic == "" {
			v.add(path+".mqtt.feedback_topic", "must not be empty with an MQTT broker (e.g. katka/firmware/feedback/#)")
		}
	}
}
