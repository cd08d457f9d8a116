package mirror

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Status is a snapshot of both links, written as JSON to the status file and
// returned by Service.Status (for an HTTP endpoint).
type Status struct {
	Site    string       `json:"site"`
	Updated time.Time    `json:"updated"`
	Links   []LinkStatus `json:"links"`
}

// LinkStatus describes one link (uplink or downlink).
type LinkStatus struct {
	// Link is "uplink" or "downlink".
	Link string `json:"link"`
	// Brokers are the central bootstrap addresses.
	Brokers []string `json:"brokers"`
	// Connected is true while a session with the central cluster is up.
	Connected bool `json:"connected"`
	// State is the link's logged state (starting, up, down: see
	// appliance/linkstate), since StateSince, with the failed attempts since
	// it went down. Unlike Connected it turns up only once the central
	// cluster keeps answering, as the log's "link back after" line does.
	State          string    `json:"state"`
	StateSince     time.Time `json:"state_since"`
	FailedAttempts int       `json:"failed_attempts,omitempty"`
	// Delivery is exactly_once or at_least_once (the mode in force).
	Delivery string `json:"delivery"`
	// LastError is the error that ended the last session, if any.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastCommit is when the last batch was committed.
	LastCommit time.Time `json:"last_commit,omitzero"`
	// Records and Bytes count what this process mirrored since it started.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Lag sums the partitions' lag in records (the uplink backlog, or the
	// central records not yet written locally).
	Lag int64 `json:"lag_records"`
	// BacklogBytes estimates the bytes of the uplink backlog.
	BacklogBytes int64 `json:"backlog_bytes"`
	// OldestUnsentAge is the age in seconds of the oldest unsent record (uplink).
	OldestUnsentAge float64 `json:"oldest_unsent_age_seconds"`
	// Partitions lists each mirrored partition.
	Partitions []PartitionStatus `json:"partitions"`
}

// PartitionStatus is one mirrored partition.
type PartitionStatus struct {
	Topic        string `json:"topic"`
	Partition    int32  `json:"partition"`
	CentralTopic string `json:"central_topic"`
	// Next is the next offset to mirror (local offset for the uplink, central
	// offset for the downlink); -1 before the position is known.
	Next int64 `json:"next_offset"`
	// End is the source partition's end (high watermark) when last seen.
	End int64 `json:"end_offset"`
	// Lag is End minus Next. While Next is -1 (the uplink has not read the
	// central checkpoints since katka started) it counts the whole local log,
	// an upper bound.
	Lag int64 `json:"lag_records"`
	// BacklogBytes and OldestUnsentAge describe the uplink backlog.
	BacklogBytes    int64   `json:"backlog_bytes,omitempty"`
	OldestUnsentAge float64 `json:"oldest_unsent_age_seconds,omitempty"`
}

// linkState is the mutable state behind one LinkStatus.
type linkState struct {
	mu sync.Mutex
	st LinkStatus
}

func (l *linkState) update(f func(*LinkStatus)) {
	l.mu.Lock()
	f(&l.st)
	l.mu.Unlock()
}

func (l *linkState) snapshot() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Partitions = append([]PartitionStatus(nil), l.st.Partitions...)
	return s
}

// WriteStatusFile writes st to path atomically (temp file and rename), so a
// reader never sees half a file.
func WriteStatusFile(path string, st Status) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sync status: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write sync status: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write sync status: %w", err)
	}
	return nil
}

// ReadStatusFile reads a status file written by a running katka.
func ReadStatusFile(path string) (Status, error) {
	var st Status
	raw, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read sync status: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("parse sync status %s: %w", path, err)
	}
	return st, nil
}

// StatusPath is where the status file of a config lives: sync.status_file, or
// sync-status.json in the data directory.
func StatusPath(dataDir, statusFile string) string {
	if statusFile != "" {
		return statusFile
	}
	return filepath.Join(dataDir, "sync-status.json")
}
