package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/term"
)

// reassignCmd is `katka topic reassign`: moves a partition's replicas to
// other nodes of a cell (AlterPartitionReassignments), and with --wait
// shows the move's progress until it is done.
func reassignCmd(admin func(cmd *cobra.Command) (*kadm.Client, context.Context, func(), error)) *cobra.Command {
	var partition int32
	var replicas string
	var cancel, wait bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "reassign TOPIC --partition N --replicas 2,3,4",
		Short: "Move a partition's replicas to other nodes of the cell (or --cancel a move)",
		Long: "Moves a partition's replicas: the new ones are added, copy the partition from its leader,\n" +
			"join the in-sync replicas, and then the nodes not listed are dropped (the leader moves if it\n" +
			"leaves). The partition stays available throughout. --wait follows the move until it is done.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			var target []int32
			if !cancel {
				for _, s := range strings.Split(replicas, ",") {
					id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
					if err != nil {
						return fmt.Errorf("--replicas %q: want node ids separated by commas", replicas)
					}
					target = append(target, int32(id))
				}
			}
			adm, ctx, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			var req kadm.AlterPartitionAssignmentsReq
			req.Assign(topic, partition, target)
			res, err := adm.AlterPartitionAssignments(ctx, req)
			if err != nil {
				return fmt.Errorf("reassign %s-%d: %w", topic, partition, err)
			}
			for _, r := range res.Sorted() {
				if r.Err != nil {
					return fmt.Errorf("reassign %s-%d: %w%s", r.Topic, r.Partition, r.Err, detail(r.ErrMessage))
				}
			}
			if cancel {
				fmt.Printf("cancelled the move of %s-%d\n", topic, partition)
				return nil
			}
			fmt.Printf("moving %s-%d to nodes %v\n", topic, partition, target)
			if !wait {
				return nil
			}
			wctx, wcancel := context.WithTimeout(cmd.Context(), waitFor)
			defer wcancel()
			return followReassignment(wctx, adm, topic, partition, target)
		},
	}
	cmd.Flags().Int32Var(&partition, "partition", 0, "the partition to move")
	cmd.Flags().StringVar(&replicas, "replicas", "", "the node ids to hold it, preferred leader first, e.g. 2,3,4")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "cancel the move in flight (the replicas being added are dropped)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the move until it is done, with a progress line")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", 10*time.Minute, "give up waiting after this long (the move goes on)")
	return cmd
}

// followReassignment polls the move of topic-partition every 500 ms and
// prints a progress line (to stderr, rewritten in place on a terminal) with
// the replicas in sync out of the target, until the partition's replicas
// are the target.
func followReassignment(ctx context.Context, adm *kadm.Client, topic string, partition int32, target []int32) error {
	t0 := time.Now()
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	last := ""
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok {
				if p, ok := td.Partitions[partition]; ok {
					inSync := 0
					for _, r := range target {
						if slices.Contains(p.ISR, r) {
							inSync++
						}
					}
					line := fmt.Sprintf("reassigning %s-%d: %s %d/%d target replicas in sync, replicas %v, leader %d (%s)",
						topic, partition, bar(inSync, len(target), 20), inSync, len(target), p.Replicas, p.Leader, time.Since(t0).Round(time.Second))
					if tty {
						fmt.Fprintf(os.Stderr, "\r%s", line)
					} else if line != last {
						fmt.Fprintln(os.Stderr, line)
					}
					last = line
					if sameSet(p.Replicas, target) || moveDone(ctx, adm, topic, partition) {
						if tty {
							fmt.Fprintln(os.Stderr)
						}
						fmt.Printf("moved %s-%d to nodes %v in %v\n", topic, partition, target, time.Since(t0).Round(time.Millisecond))
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			return fmt.Errorf("reassign %s-%d: still moving after the wait timeout (it goes on): %w", topic, partition, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// moveDone asks the cell whether the partition's move is over (no
// reassignment listed for it): a direct admin request, where the client's
// metadata may be seconds old.
func moveDone(ctx context.Context, adm *kadm.Client, topic string, partition int32) bool {
	res, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{topic: {partition: {}}})
	if err != nil {
		return false
	}
	for _, r := range res.Sorted() {
		if r.Topic == topic && r.Partition == partition {
			return false
		}
	}
	return true
}

// bar draws done/total as a text bar of width cells.
func bar(done, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	n := done * width / total
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
