package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/cluster"
)

// TestPrintCellStatusFenced: `katka cell status` names fenced nodes and
// counts offline and under-replicated partitions, and says nothing of them
// when there are none.
func TestPrintCellStatusFenced(t *testing.T) {
	st := cluster.Status{Cell: "demo", NodeID: 1, Formed: true, Members: []cluster.MemberStatus{
		{NodeID: 1, Role: "voter"}, {NodeID: 3, Role: "voter", Fenced: true, LastContactMs: 4000},
	}, OfflinePartitions: 2, UnderReplicatedPartitions: 3}
	var b bytes.Buffer
	printCellStatus(&b, st)
	for _, want := range []string{"fenced (no heartbeat within cell.session_timeout): [3]\n", "partitions: 2 offline, 3 under-replicated\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, b.String())
		}
	}
	st.Members[1].Fenced, st.OfflinePartitions, st.UnderReplicatedPartitions = false, 0, 0
	b.Reset()
	printCellStatus(&b, st)
	if strings.Contains(b.String(), "fenced") || strings.Contains(b.String(), "partitions:") {
		t.Errorf("a healthy cell's status mentions fencing or partitions:\n%s", b.String())
	}
}
