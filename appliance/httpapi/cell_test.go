package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/cluster"
)

// fakeCell knows nodes 1 and 2; removing 2 works, 1 has no controller.
type fakeCell struct{ removed []int32 }

func (f *fakeCell) Status() cluster.Status {
	return cluster.Status{Cell: "plant7", NodeID: 1, Members: []cluster.MemberStatus{{NodeID: 1, Role: "voter", PartitionsLed: 3}}}
}

func (f *fakeCell) RemoveNode(ctx context.Context, id int32) error {
	switch id {
	case 2:
		f.removed = append(f.removed, id)
		return nil
	case 1:
		return fmt.Errorf("remove node 1: %w", cluster.ErrNoController)
	}
	return fmt.Errorf("node %d: %w", id, cluster.ErrUnknownNode)
}

// TestCellEndpoints: GET /v1/cell and DELETE /v1/cell/nodes/{id} answer 404
// not_running outside a cell; in one, GET serves the status (also at the
// /v1/status/cell alias) and DELETE maps the cell's errors.
func TestCellEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := &Server{b: b}
	ts := httptest.NewServer(s.Handler(reg))
	defer ts.Close()
	for _, m := range []string{"GET /v1/cell", "DELETE /v1/cell/nodes/2"} {
		var method, path string
		fmt.Sscan(m, &method, &path)
		if code, body := do(t, method, ts.URL+path, ""); code != 404 || body["code"] != "not_running" {
			t.Errorf("%s without a cell: %d %v", m, code, body)
		}
	}
	fc := &fakeCell{}
	s.SetCell(fc)
	for _, path := range []string{"/v1/cell", "/v1/status/cell"} {
		code, body := do(t, "GET", ts.URL+path, "")
		members, _ := body["members"].([]any)
		if code != 200 || body["cell"] != "plant7" || len(members) != 1 || members[0].(map[string]any)["partitions_led"] != 3.0 {
			t.Errorf("GET %s: %d %v", path, code, body)
		}
	}
	for _, tc := range []struct {
		id   string
		code int
		err  string
	}{{"2", 204, ""}, {"7", 404, "unknown_node"}, {"1", 503, "no_controller"}, {"x", 400, "bad_request"}, {"-1", 400, "bad_request"}} {
		code, body := do(t, "DELETE", ts.URL+"/v1/cell/nodes/"+tc.id, "")
		if code != tc.code || (tc.err != "" && body["code"] != tc.err) {
			t.Errorf("DELETE node %s: %d %v, want %d %s", tc.id, code, body, tc.code, tc.err)
		}
	}
	if len(fc.removed) != 1 {
		t.Errorf("removed %v, want [2]", fc.removed)
	}
}
