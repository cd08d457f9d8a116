package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() { registerCommand(newTopicCmd) }

// kafkaFlags are the connection flags every Kafka-protocol command shares.
type kafkaFlags struct {
	brokers string
	timeout time.Duration
	sec     clientSecurity // TLS and SASL (clientsec.go)
}

func (f *kafkaFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.brokers, "brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap addresses (host:port)")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 30*time.Second, "how long a request may take, retries included")
	f.sec.add(cmd)
}

// client connects to the brokers with extra kgo options.
func (f *kafkaFlags) client(opts ...kgo.Opt) (*kgo.Client, error) {
	var seeds []string
	for _, s := range strings.Split(f.brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("--brokers: no address given (e.g. 127.0.0.1:9092)")
	}
	sec, err := f.sec.opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RetryTimeout(f.timeout)}, sec...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", f.brokers, err)
	}
	return cl, nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// parseKV parses k=v pairs (from --config, --set, --header).
func parseKV(flag string, pairs []string) (map[string]string, []string, error) {
	m := map[string]string{}
	var order []string
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, nil, fmt.Errorf("--%s %q: want key=value", flag, p)
		}
		if _, dup := m[k]; !dup {
			order = append(order, k)
		}
		m[k] = v
	}
	return m, order, nil
}

func newTopicCmd() *cobra.Command {
	var kf kafkaFlags
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter and delete topics over the Kafka protocol",
	}
	kf.add(cmd)
	// admin connects and bounds the command by --timeout; done releases both.
	admin := func(cmd *cobra.Command) (*kadm.Client, context.Context, func(), error) {
		cl, err := kf.client()
		if err != nil {
			return nil, nil, nil, err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), kf.timeout)
		return kadm.NewClient(cl), ctx, func() { cancel(); cl.Close() }, nil
	}

	var partitions int32
	var replicas int16
	var configs []string
	create := &cobra.Command{
		Use:   "create TOPIC...",
		Short: "Create topics",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := parseKV("config", configs)
			if err != nil {
				return err
			}
			cm := map[string]*string{}
			for k, v := range cfg {
				cm[k] = kadm.StringPtr(v)
			}
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.CreateTopics(ctx, partitions, replicas, cm, args...)
			if err != nil {
				return fmt.Errorf("create topics: %w", err)
			}
			var errs []error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("create topic %s: %w%s", r.Topic, r.Err, detail(r.ErrMessage)))
					continue
				}
				if r.ReplicationFactor > 1 {
					fmt.Printf("created %s (%d partitions, replication factor %d, id %s)\n", r.Topic, r.NumPartitions, r.ReplicationFactor, r.ID)
				} else {
					fmt.Printf("created %s (%d partitions, id %s)\n", r.Topic, r.NumPartitions, r.ID)
				}
			}
			return errors.Join(errs...)
		},
	}
	create.Flags().Int32VarP(&partitions, "partitions", "p", -1, "partition count (-1: the broker's default)")
	create.Flags().Int16VarP(&replicas, "replication-factor", "r", -1, "replicas per partition, up to the nodes of a cell (-1: topics.default_replication_factor; 1 on a single node)")
	create.Flags().StringArrayVarP(&configs, "config", "c", nil, "topic config key=value, repeatable (retention.ms, retention.bytes, max.message.bytes, message.timestamp.type, cleanup.policy)")

	var listOut *outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List topics with their partition counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			td, err := adm.ListTopics(ctx)
			if err != nil {
				return fmt.Errorf("list topics: %w", err)
			}
			if listOut.json() {
				type topicRow struct {
					Topic      string `json:"topic"`
					Partitions int    `json:"partitions"`
					ID         string `json:"id"`
				}
				rows := []topicRow{}
				for _, d := range td.Sorted() {
					rows = append(rows, topicRow{d.Topic, len(d.Partitions), d.ID.String()})
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITIONS\tID")
			for _, d := range td.Sorted() {
				fmt.Fprintf(w, "%s\t%d\t%s\n", d.Topic, len(d.Partitions), d.ID)
			}
			return w.Flush()
		},
	}

	describe := &cobra.Command{
		Use:   "describe TOPIC...",
		Short: "Show partitions, offsets and configs of topics",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			td, err := adm.ListTopics(ctx, args...)
			if err != nil {
				return fmt.Errorf("describe topics: %w", err)
			}
			starts, err := adm.ListStartOffsets(ctx, args...)
			if err != nil {
				return fmt.Errorf("list start offsets: %w", err)
			}
			ends, err := adm.ListEndOffsets(ctx, args...)
			if err != nil {
				return fmt.Errorf("list end offsets: %w", err)
			}
			rcs, err := adm.DescribeTopicConfigs(ctx, args...)
			if err != nil {
				return fmt.Errorf("describe configs: %w", err)
			}
			var errs []error
			for i, name := range args {
				d := td[name]
				if d.Err != nil {
					errs = append(errs, fmt.Errorf("topic %s: %w", name, d.Err))
					continue
				}
				if i > 0 {
					fmt.Println()
				}
				fmt.Printf("topic %s  id %s  partitions %d\n", name, d.ID, len(d.Partitions))
				w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "  PARTITION\tLEADER\tSTART\tEND\tRECORDS")
				for _, p := range d.Partitions.Sorted() {
					s, _ := starts.Lookup(name, p.Partition)
					e, _ := ends.Lookup(name, p.Partition)
					fmt.Fprintf(w, "  %d\t%d\t%d\t%d\t%d\n", p.Partition, p.Leader, s.Offset, e.Offset, e.Offset-s.Offset)
				}
				w.Flush()
				for _, rc := range rcs {
					if rc.Name != name {
						continue
					}
					if rc.Err != nil {
						errs = append(errs, fmt.Errorf("configs of %s: %w", name, rc.Err))
						continue
					}
					fmt.Println("  configs:")
					for _, c := range rc.Configs {
						v := "null"
						if c.Value != nil {
							v = *c.Value
						}
						fmt.Printf("    %s=%s\n", c.Key, v)
					}
				}
			}
			return errors.Join(errs...)
		},
	}

	var sets, deletes []string
	var newPartitions int32
	alter := &cobra.Command{
		Use:   "alter TOPIC",
		Short: "Change topic configs or grow the partition count",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, order, err := parseKV("set", sets)
			if err != nil {
				return err
			}
			if len(set) == 0 && len(deletes) == 0 && newPartitions == 0 {
				return errors.New("nothing to change: give --set key=value, --delete key or --partitions N")
			}
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			if len(set) > 0 || len(deletes) > 0 {
				var alters []kadm.AlterConfig
				for _, k := range order {
					alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(set[k])})
				}
				for _, k := range deletes {
					alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
				}
				res, err := adm.AlterTopicConfigs(ctx, alters, args[0])
				if err != nil {
					return fmt.Errorf("alter configs of %s: %w", args[0], err)
				}
				for _, r := range res {
					if r.Err != nil {
						return fmt.Errorf("alter configs of %s: %w%s", r.Name, r.Err, detail(r.ErrMessage))
					}
				}
				fmt.Printf("altered configs of %s\n", args[0])
			}
			if newPartitions > 0 {
				res, err := adm.UpdatePartitions(ctx, int(newPartitions), args[0])
				if err != nil {
					return fmt.Errorf("set partitions of %s: %w", args[0], err)
				}
				if r := res[args[0]]; r.Err != nil {
					return fmt.Errorf("set partitions of %s: %w%s", args[0], r.Err, detail(r.ErrMessage))
				}
				fmt.Printf("%s now has %d partitions\n", args[0], newPartitions)
			}
			return nil
		},
	}
	alter.Flags().StringArrayVar(&sets, "set", nil, "set a config key=value, repeatable")
	alter.Flags().StringArrayVar(&deletes, "delete", nil, "revert a config to the broker default, repeatable")
	alter.Flags().Int32Var(&newPartitions, "partitions", 0, "grow the topic to this many partitions")

	del := &cobra.Command{
		Use:   "delete TOPIC...",
		Short: "Delete topics and their data",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.DeleteTopics(ctx, args...)
			if err != nil {
				return fmt.Errorf("delete topics: %w", err)
			}
			var errs []error
			names := make([]string, 0, len(res))
			for n := range res {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if r := res[n]; r.Err != nil {
					errs = append(errs, fmt.Errorf("delete topic %s: %w%s", n, r.Err, detail(r.ErrMessage)))
					continue
				}
				fmt.Printf("deleted %s\n", n)
			}
			return errors.Join(errs...)
		},
	}
	listOut = addOutputFlag(list)
	cmd.AddCommand(create, list, describe, alter, del, reassignCmd(admin))
	return cmd
}

// detail formats a broker's error message, if any.
func detail(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}
