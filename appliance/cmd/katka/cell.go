package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/cluster"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/kafka"
)

func init() { registerCommand(newCellCmd) }

// startCell joins (or forms) the cell when the config has a cell section; it
// returns nil without touching the network otherwise (no multicast at all).
func startCell(b *broker.Broker, cfg config.Config, reg prometheus.Registerer, log *slog.Logger) (*cluster.Node, error) {
	if !cfg.Cell.Enabled() {
		return nil, nil
	}
	kafkaAddr := cfg.Kafka.AdvertisedAddr
	if kafkaAddr == "" {
		kafkaAddr = cfg.Kafka.Addr
	}
	n, err := cluster.Start(cluster.Options{Cell: cfg.Cell, DataDir: cfg.DataDir, KafkaAddr: kafkaAddr, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	n.Reconcile(brokerTopics{b})
	b.SetRouter(n.Router(b)) // in-process writers reach partitions led elsewhere
	runningCell, runningCellRF = n, cfg.Topics.DefaultReplicationFactor
	return n, nil
}

// newCellCmd is `katka cell`: make the cell's credential, issue node bundles,
// show the cell's status.
func newCellCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cell", Short: "A cell of neighbouring katka gateways: credential and status"}

	var name, out string
	initCmd := &cobra.Command{
		Use:   "init --name NAME --out CADIR",
		Short: "Create a new cell's CA and secret in CADIR (keep it safe: it admits nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validCellName(name); err != nil {
				return err
			}
			if err := cluster.InitCA(out, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cell %s: CA and secret written to %s\nissue a bundle per node: katka cell issue --ca %s --out NODEDIR\n", name, out, out)
			return nil
		},
	}
	initCmd.Flags().StringVar(&name, "name", "", "the cell's name (as cell.name in every node's config)")
	initCmd.Flags().StringVar(&out, "out", "", "directory for the CA (created)")
	initCmd.MarkFlagRequired("name")
	initCmd.MarkFlagRequired("out")

	var caDir, nodeOut string
	var nodeID int32
	issueCmd := &cobra.Command{
		Use:   "issue --ca CADIR --out NODEDIR [--node-id N]",
		Short: "Issue a node bundle (certificate, key, CA, secret) for cell.credential_dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := cluster.IssueNode(caDir, nodeID, nodeOut)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %d: bundle written to %s\n", id, nodeOut)
			return nil
		},
	}
	issueCmd.Flags().StringVar(&caDir, "ca", "", "the CA directory from katka cell init")
	issueCmd.Flags().StringVar(&nodeOut, "out", "", "directory for the node bundle (created)")
	issueCmd.Flags().Int32Var(&nodeID, "node-id", -1, "node id (Kafka broker id); default: the CA's next free id")
	issueCmd.MarkFlagRequired("ca")
	issueCmd.MarkFlagRequired("out")

	var httpAddr string
	var asJSON bool
	var stOut *outputFlag
	statusCmd := &cobra.Command{
		Use:   "status [--http HOST:PORT]",
		Short: "Show the cell as the local node sees it: nodes, roles, controller leader and term",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/cell", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("cell status: %w (is katka running with http.addr %s?)", err, httpAddr)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			if err != nil {
				return fmt.Errorf("cell status: %w", err)
			}
			if resp.StatusCode == http.StatusNotFound {
				return fmt.Errorf("cell status: this katka is not in a cell (no cell: section in its config)")
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("cell status: %s: %s", resp.Status, body)
			}
			if asJSON || stOut.json() {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var st cluster.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("cell status: %w", err)
			}
			printCellStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	statusCmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8092", "the node's HTTP address (http.addr)")
	statusCmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (same as --output json)")
	stOut = addOutputFlag(statusCmd)

	cmd.AddCommand(initCmd, issueCmd, statusCmd, newCellRemoveNodeCmd())
	return cmd
}

// validCellName checks a cell name as cell.name is checked.
func validCellName(name string) error {
	c := config.Default()
	c.Cell.Name, c.Cell.CredentialDir, c.Cell.PeerAddr = name, "x", "127.0.0.1:1"
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "cell.name") {
		return fmt.Errorf("--name: %q is not a cell name (allowed: 1-32 of a-z, 0-9 and -, starting with a letter or digit)", name)
	}
	return nil
}

func printCellStatus(w io.Writer, st cluster.Status) {
	leader := "none"
	if st.Raft.LeaderID >= 0 {
		leader = fmt.Sprintf("node %d (%s)", st.Raft.LeaderID, st.Raft.LeaderAddr)
	}
	fmt.Fprintf(w, "cell %s, this is node %d (%s), raft %s, term %d, controller leader %s\n",
		st.Cell, st.NodeID, st.PeerAddr, st.Raft.State, st.Raft.Term, leader)
	if !st.Formed {
		fmt.Fprintln(w, "not formed yet: waiting for cell.bootstrap_expect nodes, or for the cell's leader to add this node")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPEER ADDR\tKAFKA ADDR\tROLE\tCONTROLLER\tLAST CONTACT\tLEADS\tREPLICAS")
	for _, m := range st.Members {
		contact := "never"
		switch {
		case m.NodeID == st.NodeID:
			contact = "-" // this node
		case m.LastContactMs >= 0:
			contact = (time.Duration(m.LastContactMs) * time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%s\t%d\t%d\n", m.NodeID, m.PeerAddr, m.KafkaAddr, m.Role, m.ControllerLeader, contact, m.PartitionsLed, m.Replicas)
	}
	tw.Flush()
	if len(st.Removed) > 0 {
		fmt.Fprintf(w, "removed for good: %v\n", st.Removed)
	}
	var fenced []int32
	for _, m := range st.Members {
		if m.Fenced {
			fenced = append(fenced, m.NodeID)
		}
	}
	if len(fenced) > 0 {
		fmt.Fprintf(w, "fenced (no heartbeat within cell.session_timeout): %v\n", fenced)
	}
	printServices(w, st.Services)
	r := st.Replication
	fmt.Fprintf(w, "partitions %d, under-replicated %d, offline %d\n", r.Partitions, len(r.UnderReplicated), len(r.Offline))
	for _, l := range []struct {
		what string
		refs []cluster.PartitionRef
	}{{"offline", r.Offline}, {"under-replicated", r.UnderReplicated}} {
		for i, p := range l.refs {
			if i == 10 {
				fmt.Fprintf(w, "  ... and %d more %s\n", len(l.refs)-i, l.what)
				break
			}
			fmt.Fprintf(w, "  %s %s-%d: leader %d, replicas %v, in sync %v\n", l.what, p.Topic, p.Partition, p.Leader, p.Replicas, p.ISR)
		}
	}
	if len(st.Peers) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nPEER\tPEER ADDR\tSOURCE\tVERIFIED\tLAST SEEN")
		for _, p := range st.Peers {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s ago\n", p.NodeID, p.PeerAddr, p.Source, p.Verified, (time.Duration(p.LastSeenMs) * time.Millisecond).String())
		}
		tw.Flush()
	}
}

// runningCell is the cell node of this serve process, nil outside a cell;
// set by serve before the Kafka listener starts.
var runningCell *cluster.Node

// kafkaCellView is the Kafka listener's view of the cell, nil outside a cell.
func kafkaCellView() kafka.CellView {
	if runningCell == nil {
		return nil
	}
	return cellView{runningCell, runningCellRF}
}

// cellView adapts a cluster.Node to kafka.CellView (the topic changes are in
// cell_kafka.go).
type cellView struct {
	n  *cluster.Node
	rf int16 // topics.default_replication_factor
}

func (v cellView) NodeID() int32       { return v.n.NodeID() }
func (v cellView) ControllerID() int32 { return v.n.ControllerID() }
func (v cellView) ClusterID() string   { return v.n.ClusterID() }

func (v cellView) Brokers() []kafka.CellBroker {
	md := v.n.Metadata()
	out := make([]kafka.CellBroker, 0, len(md.Nodes))
	for _, ni := range md.Nodes {
		host, port, err := net.SplitHostPort(ni.KafkaAddr)
		p, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || perr != nil {
			continue // a node without a Kafka listener is no broker
		}
		_, fenced := md.Fenced[ni.ID]
		out = append(out, kafka.CellBroker{NodeID: ni.ID, Host: host, Port: int32(p), Rack: ni.Rack, Fenced: fenced})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

func (v cellView) Partitions(topic string) ([]kafka.CellPartition, bool) {
	t, ok := v.n.Topic(topic)
	if !ok {
		return nil, false
	}
	return cellPartitions(t), true
}

// brokerTopics adapts the broker to cluster.LocalTopics for the reconciler.
type brokerTopics struct{ b *broker.Broker }

func (l brokerTopics) Topics() []cluster.LocalTopic {
	var out []cluster.LocalTopic
	for _, t := range l.b.Topics() {
		lt := cluster.LocalTopic{Name: t.Name, ID: t.IDString(), Partitions: t.Partitions, Internal: broker.InternalTopic(t.Name), Empty: true}
		parts, err := l.b.Partitions(t.Name)
		if err != nil {
			continue
		}
		for _, p := range parts {
			if p.HighWatermark > 0 {
				lt.Empty = false
			}
		}
		out = append(out, lt)
	}
	return out
}

func (l brokerTopics) CreateTopic(name string, n int32, configs map[string]string, id string) error {
	var tid [16]byte
	if b, err := hex.DecodeString(id); err == nil && len(b) == len(tid) {
		copy(tid[:], b)
	}
	_, err := l.b.CreateTopicID(name, n, broker.TopicConfig{Overrides: configs}, tid)
	return err
}
