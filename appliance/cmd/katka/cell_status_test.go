package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/cluster"
)

// TestPrintCellStatusFenced: `katka cell status` names fenced nodes, and
// says nothing of fencing when there are none.
func TestPrintCellStatusFenced(t *testing.T) {
	st := cluster.Status{Cell: "demo", NodeID: 1, Formed: true, Members: []cluster.MemberStatus{
		{NodeID: 1, Role: "voter"}, {NodeID: 3, Role: "voter", Fenced: true, LastContactMs: 4000},
	}}
	var b bytes.Buffer
	printCellStatus(&b, st)
	if want := "fenced (no heartbeat within cell.session_timeout): [3]\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status output lacks %q:\n%s", want, b.String())
	}
	st.Members[1].Fenced = false
	b.Reset()
	printCellStatus(&b, st)
	if strings.Contains(b.String(), "fenced") {
		t.Errorf("a healthy cell's status mentions fencing:\n%s", b.String())
	}
}
