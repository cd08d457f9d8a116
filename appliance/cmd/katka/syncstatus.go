package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror"
)

func init() { registerCommand(newSyncCmd) }

// newSyncCmd is `katka sync status`: the link status a running katka writes to
// its sync status file every second (no Kafka connection needed).
func newSyncCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sync", Short: "Central Kafka link (uplink and downlink)"}
	var cfgPath, dataDir string
	var asJSON, parts, check bool
	var stOut *outputFlag
	st := &cobra.Command{
		Use:   "status",
		Short: "Show each sync link: connected, delivery mode, lag, backlog bytes and age, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigDataDir(cmd, cfgPath, dataDir)
			if err != nil {
				return err
			}
			path := mirror.StatusPath(cfg.DataDir, cfg.Sync.StatusFile)
			s, err := mirror.ReadStatusFile(path)
			if err != nil {
				if !cfg.Sync.Enabled {
					return fmt.Errorf("sync is not enabled in this config, and %w", err)
				}
				return fmt.Errorf("%w (is katka running with this config?)", err)
			}
			out := cmd.OutOrStdout()
			if asJSON || stOut.json() {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			age := time.Since(s.Updated).Round(time.Second)
			fmt.Fprintf(out, "site %s, status of %s (%s ago)\n", s.Site, s.Updated.Local().Format(time.DateTime), age)
			if age > 10*time.Second {
				fmt.Fprintln(out, "warning: the status is stale; katka may not be running")
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINK\tCONNECTED\tDELIVERY\tLAG\tBACKLOG\tOLDEST UNSENT\tRECORDS\tLAST COMMIT\tLAST ERROR")
			for _, l := range s.Links {
				lc := "-"
				if !l.LastCommit.IsZero() {
					lc = time.Since(l.LastCommit).Round(time.Second).String() + " ago"
				}
				le := "-"
				if l.LastError != "" {
					le = l.LastError + " (" + time.Since(l.LastErrorAt).Round(time.Second).String() + " ago)"
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", l.Link, l.Connected, l.Delivery, l.Lag,
					config.ByteSize(l.BacklogBytes), (time.Duration(l.OldestUnsentAge * float64(time.Second))).Round(time.Millisecond), l.Records, lc, le)
			}
			tw.Flush()
			if parts {
				tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "\nLINK\tTOPIC\tPARTITION\tCENTRAL TOPIC\tNEXT\tEND\tLAG")
				for _, l := range s.Links {
					for _, p := range l.Partitions {
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\n", l.Link, p.Topic, p.Partition, p.CentralTopic, p.Next, p.End, p.Lag)
					}
				}
				tw.Flush()
			}
			if check {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := mirror.Ping(ctx, cfg.Sync); err != nil {
					return err
				}
				fmt.Fprintf(out, "central cluster %v answers\n", cfg.Sync.Brokers)
			}
			return nil
		},
	}
	f := st.Flags()
	f.StringVar(&cfgPath, "config", "", "katka config file (finds data_dir and sync.status_file)")
	f.StringVar(&dataDir, "data-dir", "", "data directory (overrides data_dir)")
	f.BoolVar(&asJSON, "json", false, "print the status as JSON (same as --output json)")
	stOut = addOutputFlag(st)
	f.BoolVar(&parts, "partitions", false, "list every mirrored partition")
	f.BoolVar(&check, "check", false, "also connect to the central cluster now")
	cmd.AddCommand(st)
	return cmd
}
