package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func init() { registerCommand(newGroupCmd) }

func newGroupCmd() *cobra.Command {
	var kf kafkaFlags
	cmd := &cobra.Command{
		Use:   "group",
		Short: "List, describe (with lag), delete consumer groups and reset their offsets",
	}
	kf.add(cmd)
	admin := func(cmd *cobra.Command) (*kadm.Client, context.Context, func(), error) {
		cl, err := kf.client()
		if err != nil {
			return nil, nil, nil, err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), kf.timeout)
		return kadm.NewClient(cl), ctx, func() { cancel(); cl.Close() }, nil
	}

	var listOut *outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			gs, err := adm.ListGroups(ctx)
			if err != nil {
				return fmt.Errorf("list groups: %w", err)
			}
			if listOut.json() {
				type groupRow struct {
					Group        string `json:"group"`
					State        string `json:"state"`
					ProtocolType string `json:"protocol_type"`
				}
				rows := []groupRow{}
				for _, g := range gs.Sorted() {
					rows = append(rows, groupRow{g.Group, g.State, g.ProtocolType})
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL TYPE")
			for _, g := range gs.Sorted() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
			}
			return tw.Flush()
		},
	}

	describe := &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Show a group's state, members and, per partition, committed offset, end offset and lag",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			lags, err := adm.Lag(ctx, args...)
			if err != nil {
				return fmt.Errorf("describe groups: %w", err)
			}
			var errs []error
			for _, g := range lags.Sorted() {
				if err := g.Error(); err != nil {
					errs = append(errs, fmt.Errorf("group %s: %w", g.Group, err))
					continue
				}
				fmt.Printf("group %s: state %s, protocol %s/%s, %d members, total lag %d\n", g.Group, g.State, g.ProtocolType, g.Protocol, len(g.Members), g.Lag.Total())
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER\tCLIENT-HOST")
				for _, l := range g.Lag.Sorted() {
					cur, lag := "-", "-"
					if l.Commit.At >= 0 {
						cur = strconv.FormatInt(l.Commit.At, 10)
					}
					if l.Err == nil && l.Lag >= 0 {
						lag = strconv.FormatInt(l.Lag, 10)
					}
					member, host := "-", "-"
					if l.Member != nil {
						member, host = l.Member.MemberID, l.Member.ClientHost
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", l.Topic, l.Partition, cur, l.End.Offset, lag, member, host)
				}
				tw.Flush()
			}
			return errors.Join(errs...)
		},
	}

	del := &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete empty consumer groups and their committed offsets",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.DeleteGroups(ctx, args...)
			if err != nil {
				return fmt.Errorf("delete groups: %w", err)
			}
			var errs []error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("delete group %s: %w", r.Group, r.Err))
					continue
				}
				fmt.Printf("deleted %s\n", r.Group)
			}
			return errors.Join(errs...)
		},
	}

	var (
		topics                        []string
		toEarliest, toLatest, execute bool
		toOffset                      int64
		toDatetime                    string
	)
	reset := &cobra.Command{
		Use:   "reset-offsets GROUP --topic TOPIC[:P,P...] (--to-earliest|--to-latest|--to-offset N|--to-datetime T) [--execute]",
		Short: "Reset a group's committed offsets (dry run unless --execute; the group must have no members)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			modes := 0
			for _, b := range []bool{toEarliest, toLatest, cmd.Flags().Changed("to-offset"), toDatetime != ""} {
				if b {
					modes++
				}
			}
			if modes != 1 {
				return errors.New("reset-offsets: give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime T")
			}
			if len(topics) == 0 {
				return errors.New("reset-offsets: --topic is required (TOPIC or TOPIC:0,1,2)")
			}
			var ts time.Time
			if toDatetime != "" {
				var err error
				if ts, err = time.Parse(time.RFC3339, toDatetime); err != nil {
					return fmt.Errorf("--to-datetime %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", toDatetime)
				}
			}
			want := map[string][]int32{}
			var names []string
			for _, t := range topics {
				name, ps, _ := strings.Cut(t, ":")
				names = append(names, name)
				if ps == "" {
					want[name] = nil
					continue
				}
				for _, p := range strings.Split(ps, ",") {
					n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
					if err != nil {
						return fmt.Errorf("--topic %q: bad partition %q", t, p)
					}
					want[name] = append(want[name], int32(n))
				}
			}
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			var target kadm.ListedOffsets
			switch {
			case toEarliest:
				target, err = adm.ListStartOffsets(ctx, names...)
			case toLatest:
				target, err = adm.ListEndOffsets(ctx, names...)
			case toDatetime != "":
				target, err = adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), names...)
			default:
				target, err = adm.ListEndOffsets(ctx, names...)
			}
			if err != nil {
				return fmt.Errorf("list offsets: %w", err)
			}
			current, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				return fmt.Errorf("fetch offsets of %s: %w", group, err)
			}
			next := kadm.Offsets{}
			var errs []error
			target.Each(func(o kadm.ListedOffset) {
				if ps := want[o.Topic]; ps != nil && !containsInt32(ps, o.Partition) {
					return
				}
				if o.Err != nil {
					errs = append(errs, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
					return
				}
				at := o.Offset
				if toDatetime != "" && at < 0 {
					// No record that new: the end, as Kafka's tool does.
					if end, err := adm.ListEndOffsets(ctx, o.Topic); err == nil {
						if e, ok := end.Lookup(o.Topic, o.Partition); ok {
							at = e.Offset
						}
					}
				}
				if cmd.Flags().Changed("to-offset") {
					at = toOffset
					if start, ok := lookupStart(ctx, adm, o.Topic, o.Partition); ok && at < start {
						at = start
					}
					if at > o.Offset {
						at = o.Offset // clamp to the end, as Kafka's tool does
					}
				}
				next.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: at, LeaderEpoch: -1})
			})
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			sorted := next.Sorted()
			sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Topic < sorted[j].Topic })
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET")
			for _, o := range sorted {
				cur := "-"
				if c, ok := current.Lookup(o.Topic, o.Partition); ok && c.At >= 0 {
					cur = strconv.FormatInt(c.At, 10)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", o.Topic, o.Partition, cur, o.At)
			}
			tw.Flush()
			if !execute {
				fmt.Println("dry run: nothing changed; add --execute to commit these offsets")
				return nil
			}
			res, err := adm.CommitOffsets(ctx, group, next)
			if err != nil {
				return fmt.Errorf("commit offsets: %w", err)
			}
			if err := res.Error(); err != nil {
				return fmt.Errorf("commit offsets of %s (a group with active members cannot be reset): %w", group, err)
			}
			fmt.Printf("reset %d partitions of %s\n", len(sorted), group)
			return nil
		},
	}
	reset.Flags().StringSliceVar(&topics, "topic", nil, "topic to reset, optionally with partitions: orders or orders:0,2 (repeatable)")
	reset.Flags().BoolVar(&toEarliest, "to-earliest", false, "reset to the log start offset")
	reset.Flags().BoolVar(&toLatest, "to-latest", false, "reset to the end (skip everything)")
	reset.Flags().Int64Var(&toOffset, "to-offset", 0, "reset to this offset (clamped to the partition's range)")
	reset.Flags().StringVar(&toDatetime, "to-datetime", "", "reset to the first record at or after this RFC 3339 time")
	reset.Flags().BoolVar(&execute, "execute", false, "commit the new offsets (without it, only print them)")

	listOut = addOutputFlag(list)
	cmd.AddCommand(list, describe, del, reset)
	return cmd
}

func containsInt32(list []int32, v int32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// lookupStart returns a partition's log start offset.
func lookupStart(ctx context.Context, adm *kadm.Client, topic string, p int32) (int64, bool) {
	so, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, false
	}
	o, ok := so.Lookup(topic, p)
	return o.Offset, ok && o.Err == nil
}
