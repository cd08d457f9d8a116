package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/firmware"
)

// MaxFeedbackBytes bounds one device feedback message (HTTP body or MQTT payload).
const MaxFeedbackBytes = 4 << 10

// Feedback states a device may report.
var feedbackStates = []string{"downloading", "installed", "failed", "running"}

// Feedback is one device's report about an artefact, written to the status
// topic keyed by device (so a compacted topic keeps each device's latest).
type Feedback struct {
	Device  string `json:"device"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// State is downloading, installed, failed or running.
	State string `json:"state"`
	// RunningVersion is the version the device runs now (optional).
	RunningVersion string `json:"running_version,omitempty"`
	// Progress is 0..100 while downloading (optional).
	Progress *int   `json:"progress,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// Time is when katka received it (set by katka).
	Time time.Time `json:"time"`
	// Source is http or mqtt (set by katka).
	Source string `json:"source"`
}

func (f *Feedback) check() error {
	if err := firmware.ValidName(f.Device); err != nil {
		return fmt.Errorf("device %w", err)
	}
	if err := firmware.ValidName(f.Name); err != nil {
		return fmt.Errorf("name %w", err)
	}
	if err := firmware.ValidName(f.Version); err != nil {
		return fmt.Errorf("version %w", err)
	}
	ok := false
	for _, s := range feedbackStates {
		ok = ok || s == f.State
	}
	if !ok {
		return fmt.Errorf("state %q is not allowed (allowed: %s)", f.State, strings.Join(feedbackStates, ", "))
	}
	if f.Progress != nil && (*f.Progress < 0 || *f.Progress > 100) {
		return fmt.Errorf("progress %d is out of range (allowed: 0..100)", *f.Progress)
	}
	if len(f.Detail) > 1024 {
		return fmt.Errorf("detail is %d bytes (limit 1024)", len(f.Detail))
	}
	return nil
}

// recordFeedback validates a device report and writes it to the status topic.
func (s *Store) recordFeedback(ctx context.Context, data []byte, source, device string) (Feedback, error) {
	var f Feedback
	if len(data) > MaxFeedbackBytes {
		s.m.feedback.WithLabelValues(source, "invalid").Inc()
		return f, fmt.Errorf("feedback is %d bytes (limit %d)", len(data), MaxFeedbackBytes)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		s.m.feedback.WithLabelValues(source, "invalid").Inc()
		return f, fmt.Errorf("feedback is not JSON: %w", err)
	}
	if f.Device == "" {
		f.Device = device
	}
	if err := f.check(); err != nil {
		s.m.feedback.WithLabelValues(source, "invalid").Inc()
		return f, err
	}
	f.Time, f.Source = s.now().UTC().Truncate(time.Millisecond), source
	val, _ := json.Marshal(f)
	if _, err := s.o.Broker.Produce(ctx, s.o.Config.StatusTopic, 0, []broker.Record{{Key: []byte(f.Device), Value: val, Timestamp: f.Time}}, broker.AcksAll); err != nil {
		return f, fmt.Errorf("write feedback: %w", err)
	}
	s.m.feedback.WithLabelValues(source, "ok").Inc()
	return f, nil
}

// Routes registers the device endpoints on mux:
//
//	GET  /v1/firmware                      available artefacts (?hardware=, ?label=k=v; ?device= only those in an open wave)
//	GET  /v1/firmware/{name}/{version}     the artefact, with Range, ETag "<sha256>"; ?device= outside an open wave is 403
//	POST /v1/firmware/feedback             a device report (Feedback) into the status topic
func (s *Store) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/firmware", s.list)
	mux.HandleFunc("GET /v1/firmware/{name}/{version}", s.download)
	mux.HandleFunc("POST /v1/firmware/feedback", s.feedback)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// listEntry is one artefact in GET /v1/firmware.
type listEntry struct {
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	Size     int64             `json:"size"`
	SHA256   string            `json:"sha256"`
	URL      string            `json:"url"`
	Selector firmware.Selector `json:"selector"`
	Expires  time.Time         `json:"expires"`
	// Wave is the rollout wave the asking device (?device=) is in.
	Wave *int `json:"wave,omitempty"`
}

// available returns the manifests of the available artefacts.
func (s *Store) available() []firmware.Manifest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []firmware.Manifest
	now := s.now()
	for _, a := range s.arts {
		if a.state == StateAvailable && now.Before(a.m.Expires) {
			out = append(out, a.m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return firmware.CompareVersions(out[i].Version, out[j].Version) < 0
	})
	return out
}

func (s *Store) list(w http.ResponseWriter, r *http.Request) {
	hw := r.URL.Query().Get("hardware")
	labels := map[string]string{}
	for _, l := range r.URL.Query()["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("label %q is not key=value", l), Code: "invalid_label"})
			return
		}
		labels[k] = v
	}
	device := r.URL.Query().Get("device")
	out := []listEntry{}
	now := s.now()
	for _, a := range s.available() {
		if (hw != "" || len(labels) > 0) && !a.Selector.Matches(hw, labels) {
			continue
		}
		e := listEntry{Name: a.Name, Version: a.Version, Size: a.Size, SHA256: a.SHA256,
			URL: "/v1/firmware/" + a.Name + "/" + a.Version, Selector: a.Selector, Expires: a.Expires}
		if device != "" {
			wave, open := a.WaveFor(device, labels, now)
			if !open || a.Paused {
				continue
			}
			e.Wave = &wave
		}
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Store) download(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if firmware.ValidName(name) != nil || firmware.ValidName(version) != nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such artefact", Code: "not_found"})
		return
	}
	s.mu.Lock()
	a, ok := s.arts[name+"/"+version]
	if !ok || a.state != StateAvailable {
		s.mu.Unlock()
		msg := "no such artefact"
		if ok {
			msg = fmt.Sprintf("artefact is %s (%d of %d chunks)", a.state, a.nhave, len(a.have))
		}
		writeJSON(w, http.StatusNotFound, apiError{Error: msg, Code: "not_available"})
		return
	}
	if !s.now().Before(a.m.Expires) {
		s.mu.Unlock()
		writeJSON(w, http.StatusGone, apiError{Error: fmt.Sprintf("the manifest of %s %s expired at %s", name, version, a.m.Expires.Format(time.RFC3339)), Code: "expired"})
		return
	}
	if device := r.URL.Query().Get("device"); device != "" {
		labels := map[string]string{}
		for _, l := range r.URL.Query()["label"] {
			if k, v, ok := strings.Cut(l, "="); ok {
				labels[k] = v
			}
		}
		if a.m.Paused {
			s.mu.Unlock()
			writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("the rollout of %s %s is paused by its publisher", name, version), Code: "rollout_paused"})
			return
		}
		if wave, open := a.m.WaveFor(device, labels, s.now()); !open {
			s.mu.Unlock()
			msg := fmt.Sprintf("device %s is in no rollout wave of %s %s", device, name, version)
			if wave >= 0 {
				msg = fmt.Sprintf("device %s is in rollout wave %d of %s %s, which opens at %s", device, wave, name, version, a.m.WaveOpens(wave).Format(time.RFC3339))
			}
			writeJSON(w, http.StatusForbidden, apiError{Error: msg, Code: "not_in_open_wave"})
			return
		}
	}
	// Opened under the lock: an eviction afterwards removes the name, the
	// open file stays readable to the end of this response.
	f, err := os.Open(filepath.Join(s.artDir(name, version), "data"))
	a.lastUsed = s.now().UTC()
	sum := a.m.SHA256
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error(), Code: "internal"})
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error(), Code: "internal"})
		return
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+"-"+version+".bin"))
	http.ServeContent(&countingWriter{ResponseWriter: w, m: s.m}, r, "", st.ModTime(), f)
}

type countingWriter struct {
	http.ResponseWriter
	m *metrics
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.m.served.Add(float64(n))
	return n, err
}

func (s *Store) feedback(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxFeedbackBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.m.feedback.WithLabelValues("http", "invalid").Inc()
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("feedback is larger than %d bytes", MaxFeedbackBytes), Code: "too_large"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Code: "bad_request"})
		return
	}
	f, err := s.recordFeedback(r.Context(), data, "http", "")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Code: "invalid_feedback"})
		return
	}
	writeJSON(w, http.StatusAccepted, f)
}
