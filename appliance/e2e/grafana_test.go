package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dashboardPath is the Grafana dashboard shipped in the repo.
const dashboardPath = "../../packaging/grafana/katka.json"

// dashboardExprs returns every PromQL expression of the dashboard's panels
// (rows included).
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var out []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("dashboard panel: %v", err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q has a target without expr", p.Title)
				}
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promOperators = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping clauses
// are cut, that are neither a function call nor an operator keyword.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, " ")
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or tail of a number
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promOperators[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNamesOfExpr(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le, broker) (rate(katka_x_bucket{a="b(c)"}[5m]))) / on (job) katka_y > 1e3 and katka_z offset 5m`)
	if want := []string{"katka_x_bucket", "katka_y", "katka_z"}; !slices.Equal(got, want) {
		t.Fatalf("metricNames = %q, want %q", got, want)
	}
}

// registeredMetrics reads the metric names katka's source registers with
// client_golang: the Name of every prometheus.*Opts literal and the first
// argument of every prometheus.NewDesc, in the module's non-test Go files.
// Histograms and summaries add their _bucket, _sum and _count series. These
// are the descriptors the registries hold, including the vectors that show
// in /metrics only once a label value is used (a sync link, a Modbus device).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if key, _ := kv.Key.(*ast.Ident); !ok || key == nil || key.Name != "Name" {
						continue
					}
					if name, ok := stringLit(kv.Value); ok {
						names[name] = true
						if sel.Sel.Name == "HistogramOpts" || sel.Sel.Name == "SummaryOpts" {
							names[name+"_sum"], names[name+"_count"] = true, true
							if sel.Sel.Name == "HistogramOpts" {
								names[name+"_bucket"] = true
							}
						}
					}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
					if name, ok := stringLit(n.Args[0]); ok {
						names[name] = true
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("scan the module's sources: %v", err)
	}
	return names
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// scrapeNames returns the metric names of a /metrics page (its # TYPE lines,
// with the _bucket/_sum/_count series of histograms and summaries).
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
				if f[3] == "histogram" {
					names[f[2]+"_bucket"] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return names
}

// TestGrafanaDashboardNamesExportedMetrics: every metric a query of
// packaging/grafana/katka.json names is one katka exports. The real binary
// runs, a record is produced and fetched, and its /metrics is scraped; every
// katka_ name it shows must also be found by the source scan (so the scan
// sees what the registries hold), and every dashboard name must be in the
// scrape or among the registered descriptors (vectors appear in /metrics
// only once used: a sync link, an MQTT broker, a Modbus device).
func TestGrafanaDashboardNamesExportedMetrics(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 30 {
		t.Fatalf("dashboard has %d queries, want the full set (>= 30)", len(exprs))
	}
	registered := registeredMetrics(t)

	k := NewKatka(t, t.TempDir(), testConfig)
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.CreateTopic(ctx, "dash.temp", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Produce(ctx, "dash.temp", 0, "all", []ProduceRecord{{Value: []byte("21.5")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Fetch(ctx, "dash.temp", 0, 0, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	scraped := scrapeNames(t, k.URL("/metrics"))
	for _, want := range []string{"katka_records_in_total", "katka_records_out_total", "katka_partition_bytes",
		"katka_fsync_duration_seconds_bucket", "katka_storage_quota_bytes", "katka_storage_free_bytes", "go_goroutines"} {
		if !scraped[want] {
			t.Errorf("/metrics of the running binary lacks %s", want)
		}
	}
	for name := range scraped {
		if strings.HasPrefix(name, "katka_") && !registered[name] {
			t.Errorf("/metrics shows %s but the source scan did not find it: the scan misses a way of registering", name)
		}
	}

	seen := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("query %q names no metric", e)
		}
		for _, n := range names {
			seen[n] = true
			if !scraped[n] && !registered[n] {
				t.Errorf("query %q names %s, which katka does not export", e, n)
			}
		}
	}
	t.Logf("%d queries, %d distinct metrics, all exported (%d in the scrape, %d registered in the sources)",
		len(exprs), len(seen), len(scraped), len(registered))
}
