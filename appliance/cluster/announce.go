package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Announcement is what a node tells its neighbours about itself, over mDNS
// TXT records or in answer to a peer hello.
type Announcement struct {
	// Cell is the cell name.
	Cell string `json:"cell"`
	// NodeID is the node id from the node's certificate.
	NodeID int32 `json:"node_id"`
	// PeerAddr is where the node's peer listener is reached.
	PeerAddr string `json:"peer_addr"`
	// KafkaAddr is the node's advertised Kafka address ("" when it has none).
	KafkaAddr string `json:"kafka_addr"`
	// Formed reports that the node is part of a formed cell (has raft state), so
	// newcomers join it rather than bootstrap a new one.
	Formed bool `json:"formed"`
	// Time is when the announcement was made (seconds), bounding replays.
	Time time.Time `json:"time"`
}

// maxAnnounceSkew bounds how far an announcement's time may be from ours:
// gateways' clocks drift, but a recorded announcement should not live forever.
const maxAnnounceSkew = 10 * time.Minute

// txt encodes a as mDNS TXT strings with a MAC keyed by the cell secret.
func (a Announcement) txt(secret []byte) []string {
	fields := []string{
		"v=1",
		"cell=" + a.Cell,
		"id=" + strconv.Itoa(int(a.NodeID)),
		"peer=" + a.PeerAddr,
		"kafka=" + a.KafkaAddr,
		"formed=" + boolDigit(a.Formed),
		"ts=" + strconv.FormatInt(a.Time.Unix(), 10),
	}
	return append(fields, "mac="+mac(secret, fields))
}

// parseAnnouncement decodes and authenticates TXT strings. It fails for
// another cell, a bad or missing MAC, or a time too far from now.
func parseAnnouncement(txt []string, cell string, secret []byte, now time.Time) (Announcement, error) {
	var fields []string
	kv := map[string]string{}
	var gotMAC string
	for _, s := range txt {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		if k == "mac" {
			gotMAC = v
			continue
		}
		fields = append(fields, s)
		kv[k] = v
	}
	if kv["v"] != "1" {
		return Announcement{}, fmt.Errorf("announcement version %q not supported", kv["v"])
	}
	if kv["cell"] != cell {
		return Announcement{}, fmt.Errorf("announcement of cell %q, not %q", kv["cell"], cell)
	}
	if !hmac.Equal([]byte(gotMAC), []byte(mac(secret, fields))) {
		return Announcement{}, fmt.Errorf("announcement MAC does not match this cell's secret")
	}
	id, err := strconv.ParseInt(kv["id"], 10, 32)
	if err != nil || id < 0 || id > MaxNodeID {
		return Announcement{}, fmt.Errorf("announcement node id %q invalid", kv["id"])
	}
	ts, err := strconv.ParseInt(kv["ts"], 10, 64)
	if err != nil {
		return Announcement{}, fmt.Errorf("announcement time %q invalid", kv["ts"])
	}
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > maxAnnounceSkew || d < -maxAnnounceSkew {
		return Announcement{}, fmt.Errorf("announcement time %s is more than %s from ours", t.UTC().Format(time.RFC3339), maxAnnounceSkew)
	}
	return Announcement{
		Cell: kv["cell"], NodeID: int32(id), PeerAddr: kv["peer"], KafkaAddr: kv["kafka"],
		Formed: kv["formed"] == "1", Time: t,
	}, nil
}

// mac is the hex HMAC-SHA256 of the fields (in order) keyed by secret.
func mac(secret []byte, fields []string) string {
	h := hmac.New(sha256.New, secret)
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
