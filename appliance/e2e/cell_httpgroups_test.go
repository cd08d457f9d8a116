package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// cellHTTP sends one HTTP request to a node of the cell and returns the
// status and body.
func cellHTTP(t *testing.T, p *cellProc, method, path, contentType, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+p.httpAddr()+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on node %d: %v", method, path, p.i, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestCellHTTPGroups: in a 3-node cell the HTTP API serves each consumer
// group from the node coordinating it. A group committed through Kafka is
// listed by /v1/groups on its coordinator only (each node lists the groups
// of the __consumer_offsets partitions it leads, as Kafka's ListGroups); an
// offset reset on its coordinator works and on the other nodes answers 421
// naming the coordinator FindCoordinator names; a REST v2 consumer is
// refused (421, 42101) on a node that does not coordinate its group and
// joins it on the one that does.
func TestCellHTTPGroups(t *testing.T) {
	c := startReplCell(t, 3, "httpgroups")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	byID := map[int32]*cellProc{}
	for _, p := range c.nodes {
		st, ok := p.status()
		if !ok {
			t.Fatalf("node %d does not answer its status", p.i)
		}
		byID[st.NodeID] = p
	}
	coordinator := func(g string) int32 {
		var id int32 = -1
		waitUntil(t, 20*time.Second, "the coordinator of "+g, func() bool {
			r := c.adm.FindGroupCoordinators(ctx, g)[g]
			id = r.NodeID
			return r.Err == nil && byID[id] != nil
		})
		return id
	}

	const grp = "dash"
	waitUntil(t, 20*time.Second, "a commit of group "+grp, func() bool {
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: replTopic, Partition: 0, At: 1, LeaderEpoch: -1})
		r, err := c.adm.CommitOffsets(ctx, grp, os)
		return err == nil && r.Ok()
	})
	coord := coordinator(grp)
	for id, p := range byID {
		code, body := cellHTTP(t, p, "GET", "/v1/groups", "", "")
		var groups []struct {
			Group string `json:"group"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &groups) != nil {
			t.Fatalf("GET /v1/groups on node %d: %d %s", id, code, body)
		}
		listed := slices.ContainsFunc(groups, func(g struct {
			Group string `json:"group"`
		}) bool {
			return g.Group == grp
		})
		if listed != (id == coord) {
			t.Errorf("node %d lists %s: %v; its coordinator is node %d (%s)", id, grp, listed, coord, body)
		}
		code, body = cellHTTP(t, p, "POST", "/v1/groups/"+grp+"/offsets", "application/json", `{"topic":"`+replTopic+`","partitions":[0],"to":"earliest"}`)
		if id == coord {
			if code != 200 {
				t.Errorf("offset reset on the coordinator, node %d: %d %s", id, code, body)
			}
			continue
		}
		var e struct {
			Code        string `json:"code"`
			Coordinator struct {
				NodeID    int32  `json:"node_id"`
				KafkaAddr string `json:"kafka_addr"`
			} `json:"coordinator"`
		}
		if code != 421 || json.Unmarshal([]byte(body), &e) != nil || e.Code != "not_coordinator" || e.Coordinator.NodeID != coord ||
			e.Coordinator.KafkaAddr != c.net.ip(byID[coord].i)+":9092" {
			t.Errorf("offset reset on node %d: %d %s; want 421 not_coordinator naming node %d", id, code, body, coord)
		}
	}

	const restGrp = "rest-dash"
	rc := coordinator(restGrp)
	const v2 = "application/vnd.kafka.v2+json"
	for id, p := range byID {
		if id == rc {
			continue
		}
		if code, body := cellHTTP(t, p, "POST", "/consumers/"+restGrp, v2, `{"name":"c1"}`); code != 421 || !strings.Contains(body, "42101") {
			t.Errorf("REST consumer of %s on node %d: %d %s; want 421 42101 (node %d coordinates it)", restGrp, id, code, body, rc)
		}
	}
	p := byID[rc]
	if code, body := cellHTTP(t, p, "POST", "/consumers/"+restGrp, v2, `{"name":"c1","auto.offset.reset":"earliest"}`); code != 200 {
		t.Fatalf("REST consumer on the coordinator, node %d: %d %s", rc, code, body)
	}
	inst := "/consumers/" + restGrp + "/instances/c1"
	if code, body := cellHTTP(t, p, "POST", inst+"/subscription", v2, `{"topics":["`+replTopic+`"]}`); code != 204 {
		t.Fatalf("subscribe on node %d: %d %s", rc, code, body)
	}
	waitUntil(t, 20*time.Second, "the REST consumer to be assigned every partition", func() bool {
		_, body := cellHTTP(t, p, "GET", inst+"/assignments", "", "")
		var a struct {
			Partitions []struct{} `json:"partitions"`
		}
		return json.Unmarshal([]byte(body), &a) == nil && len(a.Partitions) == replPartitions
	})
	if code, body := cellHTTP(t, p, "DELETE", inst, "", ""); code != 204 {
		t.Errorf("delete the REST consumer: %d %s", code, body)
	}
}
