package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/plugins/host"
)

func init() { registerCommand(newPluginCmd) }

// newPluginCmd is `katka plugin list|status`.
func newPluginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "List installed plugins and show the running plugin instances",
	}
	var cfgPath, dir string
	var listOut *outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List the plugins in the plugins directory and verify their checksums",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if dir == "" {
				dir = cfg.Plugins.Dir
			}
			ms, errs := host.Discover(dir)
			if len(ms) == 0 && len(errs) > 0 {
				return fmt.Errorf("plugin list: %w", errors.Join(errs...))
			}
			rows := []pluginRow{}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tKIND\tVERSION\tCHECKSUM\tINSTANCES\tCOMMAND")
			for _, m := range ms {
				sum := "ok"
				if err := m.Verify(); err != nil {
					sum = "MISMATCH"
					errs = append(errs, err)
				}
				var insts []string
				for _, in := range cfg.Plugins.Instances {
					if in.Plugin == m.Name {
						insts = append(insts, in.Name)
					}
				}
				rows = append(rows, pluginRow{m.Name, string(m.Kind), m.Version, sum, append([]string{}, insts...), m.Path()})
				if len(insts) == 0 {
					insts = []string{"-"}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Kind, m.Version, sum, strings.Join(insts, ","), m.Path())
			}
			if listOut.json() {
				if err := writeJSON(cmd.OutOrStdout(), rows); err != nil {
					return err
				}
			} else {
				w.Flush()
			}
			for _, err := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), "problem:", err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("plugin list: %d problem(s) in %s", len(errs), dir)
			}
			return nil
		},
	}
	list.Flags().StringVar(&cfgPath, "config", "", "katka config file (for plugins.dir and the instances)")
	list.Flags().StringVar(&dir, "dir", "", "plugins directory (default: plugins.dir of the config)")
	listOut = addOutputFlag(list)

	var httpAddr string
	var statusOut *outputFlag
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each plugin instance of a running katka (from its /metrics)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			insts, err := pluginStatus(httpAddr)
			if err != nil {
				return err
			}
			if statusOut.json() {
				rows := []pluginInstanceRow{}
				for _, s := range insts {
					rows = append(rows, pluginInstanceRow{s.instance, s.plugin, s.kind, s.up > 0, s.restarts, s.in, s.out, s.errors, s.commits})
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			if len(insts) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no plugin instances running")
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "INSTANCE\tPLUGIN\tKIND\tUP\tRESTARTS\tRECORDS_IN\tRECORDS_OUT\tERRORS\tCOMMITS")
			for _, s := range insts {
				up := "no"
				if s.up > 0 {
					up = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", s.instance, s.plugin, s.kind, up, s.restarts, s.in, s.out, s.errors, s.commits)
			}
			return w.Flush()
		},
	}
	status.Flags().StringVar(&httpAddr, "http-addr", "127.0.0.1:8092", "katka's HTTP address (host:port)")
	statusOut = addOutputFlag(status)
	cmd.AddCommand(list, status)
	return cmd
}

// instanceStatus is one instance's row, summed from its metrics.
type instanceStatus struct {
	instance, plugin, kind                 string
	up, restarts, in, out, errors, commits float64
}

// pluginStatus reads katka_plugin_* from katka's /metrics.
func pluginStatus(addr string) ([]*instanceStatus, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("plugin status: is katka running with http.addr %s? %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("plugin status: GET /metrics: %s", resp.Status)
	}
	return parsePluginMetrics(resp.Body)
}

// parsePluginMetrics sums the plugin series of a Prometheus text exposition per instance.
func parsePluginMetrics(r io.Reader) ([]*instanceStatus, error) {
	by := map[string]*instanceStatus{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "katka_plugin_") {
			continue
		}
		open, close := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
		if open < 0 || close < open {
			continue
		}
		name, labels := line[:open], parseLabels(line[open+1:close])
		v, err := strconv.ParseFloat(strings.TrimSpace(line[close+1:]), 64)
		if err != nil || labels["instance"] == "" {
			continue
		}
		s := by[labels["instance"]]
		if s == nil {
			s = &instanceStatus{instance: labels["instance"], plugin: labels["plugin"], kind: labels["kind"]}
			by[s.instance] = s
		}
		switch name {
		case "katka_plugin_up":
			s.up = v
		case "katka_plugin_restarts_total":
			s.restarts += v
		case "katka_plugin_records_in_total":
			s.in += v
		case "katka_plugin_records_out_total":
			s.out += v
		case "katka_plugin_errors_total":
			s.errors += v
		case "katka_plugin_commits_total":
			s.commits += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("plugin status: read /metrics: %w", err)
	}
	out := make([]*instanceStatus, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].instance < out[j].instance })
	return out, nil
}

// parseLabels parses `a="x",b="y"` (label values as Prometheus escapes them).
func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		key := strings.TrimLeft(s[:eq], ", ")
		i := eq + 2
		var b strings.Builder
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(s[i])
		}
		m[key] = b.String()
		if i+1 >= len(s) {
			break
		}
		s = s[i+1:]
	}
	return m
}
