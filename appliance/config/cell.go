package config

import (
	"fmt"
	"net"
	"regexp"
	"time"
)

// Cell configures katka as one node of a cell: neighbouring gateways that find
// each other over mDNS and act as one Kafka cluster (appliance/cluster). An
// empty Name means single-node katka: no peer listener, no controller and no
// multicast traffic at all.
type Cell struct {
	// Name is the cell's name; nodes announcing another name are ignored. Empty
	// turns the cell off.
	Name string `yaml:"name"`
	// CredentialDir holds this node's bundle from `katka cell issue`: ca.crt,
	// node.crt, node.key and cell.secret.
	CredentialDir string `yaml:"credential_dir"`
	// PeerAddr is the peer listener (raft and node RPCs, mutual TLS 1.3).
	PeerAddr string `yaml:"peer_addr"`
	// AdvertisedPeerAddr is the peer address other nodes dial; empty means PeerAddr.
	AdvertisedPeerAddr string `yaml:"advertised_peer_addr"`
	// MDNS turns mDNS announcement and browsing on; off, only Seeds are used.
	MDNS bool `yaml:"mdns"`
	// Interfaces lists the network interfaces mDNS uses; empty means every
	// multicast-capable interface.
	Interfaces []string `yaml:"interfaces"`
	// Seeds are peer addresses (host:port) dialled where multicast is blocked.
	Seeds []string `yaml:"seeds"`
	// BootstrapExpect is how many nodes must have found each other before a new
	// cell forms (Consul's bootstrap_expect).
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// RebrowseInterval is how long one mDNS browse round lasts before a fresh one starts.
	RebrowseInterval time.Duration `yaml:"rebrowse_interval"`
	// PeerTTL is how long a discovered peer is kept without being seen again.
	PeerTTL time.Duration `yaml:"peer_ttl"`
	// Rack is this node's Kafka rack (broker.rack); empty means none.
	Rack string `yaml:"rack"`
	// VoterReplaceAfter is how long a controller voter may stay out of
	// contact before the controller leader replaces it by a live non-voter
	// (the away node stays a member, as a non-voter).
	VoterReplaceAfter time.Duration `yaml:"voter_replace_after"`
	// HeartbeatInterval is how often every node tells the controller leader
	// it is alive (katka-rpc/1).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// SessionTimeout is how long the controller leader waits without a
	// node's heartbeat before it fences the node: the partitions it leads
	// get new leaders from their ISR.
	SessionTimeout time.Duration `yaml:"session_timeout"`
}

// Enabled reports whether this katka is a node of a cell.
func (c Cell) Enabled() bool { return c.Name != "" }

// defaultCell is the cell section of Default(): off.
func defaultCell() Cell {
	return Cell{
		MDNS:             true,
		BootstrapExpect:  3,
		RebrowseInterval: 5 * time.Second,
		PeerTTL:          30 * time.Second,

		VoterReplaceAfter: 5 * time.Minute,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    3 * time.Second,
	}
}

// cellName is the shape of a cell name: it goes into mDNS instance names,
// certificates and URIs.
var cellName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// cell validates the cell section; nothing is checked when it is off.
func (v *validator) cell(path string, c Cell, k Kafka) {
	if !c.Enabled() {
		return
	}
	if k.Addr != "" && k.AdvertisedAddr == "" {
		if host, _, err := net.SplitHostPort(k.Addr); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
			v.add("kafka.advertised_addr", "must be set in a cell when kafka.addr %q has no fixed host (other nodes tell clients this address)", k.Addr)
		}
	}
	if !cellName.MatchString(c.Name) {
		v.add(path+".name", "%q is not allowed (allowed: 1-32 of a-z, 0-9 and -, starting with a letter or digit)", c.Name)
	}
	if c.CredentialDir == "" {
		v.add(path+".credential_dir", "must be set when cell.name is (the bundle from `katka cell issue`)")
	}
	if c.PeerAddr == "" {
		v.add(path+".peer_addr", "must be set when cell.name is (e.g. 10.0.0.11:9093)")
	} else {
		v.listenAddr(path+".peer_addr", c.PeerAddr)
	}
	if c.AdvertisedPeerAddr != "" {
		v.advertisedAddr(path+".advertised_peer_addr", c.AdvertisedPeerAddr)
	} else if host, port, err := net.SplitHostPort(c.PeerAddr); err == nil && (host == "" || port == "0" || net.ParseIP(host).IsUnspecified()) {
		v.add(path+".advertised_peer_addr", "must be set when cell.peer_addr %q has no fixed host and port", c.PeerAddr)
	}
	for i, s := range c.Seeds {
		v.advertisedAddr(fmt.Sprintf("%s.seeds[%d]", path, i), s)
	}
	if !c.MDNS && len(c.Seeds) == 0 && c.BootstrapExpect > 1 {
		v.add(path+".seeds", "must list peers when cell.mdns is false")
	}
	if c.BootstrapExpect < 1 || c.BootstrapExpect > 5 {
		v.add(path+".bootstrap_expect", "%d is out of range (allowed: 1..5)", c.BootstrapExpect)
	}
	if c.RebrowseInterval < 500*time.Millisecond {
		v.add(path+".rebrowse_interval", "%s is too short (allowed: 500ms or more)", c.RebrowseInterval)
	}
	if c.PeerTTL <= c.RebrowseInterval {
		v.add(path+".peer_ttl", "%s must be longer than cell.rebrowse_interval (%s)", c.PeerTTL, c.RebrowseInterval)
	}
	if c.VoterReplaceAfter <= c.PeerTTL || c.VoterReplaceAfter > 24*time.Hour {
		v.add(path+".voter_replace_after", "%s is out of range (allowed: longer than cell.peer_ttl (%s), at most 24h)", c.VoterReplaceAfter, c.PeerTTL)
	}
	if c.HeartbeatInterval < 10*time.Millisecond || c.HeartbeatInterval > 10*time.Second {
		v.add(path+".heartbeat_interval", "%s is out of range (allowed: 10ms..10s)", c.HeartbeatInterval)
	}
	if c.SessionTimeout <= 2*c.HeartbeatInterval || c.SessionTimeout > time.Minute {
		v.add(path+".session_timeout", "%s is out of range (allowed: longer than twice cell.heartbeat_interval (%s), at most 1m0s)", c.SessionTimeout, c.HeartbeatInterval)
	}
}
