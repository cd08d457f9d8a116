package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/katka-io/katka/appliance/auth"

	"github.com/spf13/cobra"
)

// Output formats of the list and status commands.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// outputFlag is the value of --output: table (the default) or json.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }

// Set accepts table or json only, so a typo fails before any work is done.
func (o *outputFlag) Set(s string) error {
	if s != outputTable && s != outputJSON {
		return fmt.Errorf("%q is not an output format (allowed: table, json)", s)
	}
	*o = outputFlag(s)
	return nil
}

func (o *outputFlag) Type() string { return "table|json" }

// json reports whether the command should print JSON.
func (o *outputFlag) json() bool { return *o == outputJSON }

// addOutputFlag adds -o/--output table|json to cmd, with shell completion of
// its two values.
func addOutputFlag(cmd *cobra.Command) *outputFlag {
	o := outputFlag(outputTable)
	cmd.Flags().VarP(&o, "output", "o", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return &o
}

// writeJSON prints v as indented JSON; a nil slice prints [] rather than null.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// userRow is one user of `katka user list -o json`.
type userRow struct {
	User       string          `json:"user"`
	Mechanisms []mechanismJSON `json:"mechanisms"`
}

// mechanismJSON is a SCRAM mechanism and its iteration count.
type mechanismJSON struct {
	Mechanism  string `json:"mechanism"`
	Iterations int    `json:"iterations"`
}

func userRows(us []auth.UserInfo) []userRow {
	rows := []userRow{}
	for _, u := range us {
		r := userRow{User: u.Name, Mechanisms: []mechanismJSON{}}
		for _, m := range u.Mechanisms {
			r.Mechanisms = append(r.Mechanisms, mechanismJSON{string(m.Mechanism), m.Iterations})
		}
		rows = append(rows, r)
	}
	return rows
}

// aclRow is one ACL of `katka acl list -o json`.
type aclRow struct {
	Principal  string `json:"principal"`
	Host       string `json:"host"`
	Resource   string `json:"resource"`
	Pattern    string `json:"pattern"`
	Name       string `json:"name"`
	Operation  string `json:"operation"`
	Permission string `json:"permission"`
}

// manifestRow is one manifest of `katka firmware list -o json`; Error is set
// (and the rest empty) for a record that does not parse.
type manifestRow struct {
	Key       string    `json:"key"`
	Name      string    `json:"name,omitempty"`
	Version   string    `json:"version,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Chunks    int       `json:"chunks,omitempty"`
	Hardware  []string  `json:"hardware,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	Signature string    `json:"signature,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// pluginRow is one plugin of `katka plugin list -o json`.
type pluginRow struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Version   string   `json:"version"`
	Checksum  string   `json:"checksum"`
	Instances []string `json:"instances"`
	Command   string   `json:"command"`
}

// pluginInstanceRow is one instance of `katka plugin status -o json`.
type pluginInstanceRow struct {
	Instance   string  `json:"instance"`
	Plugin     string  `json:"plugin"`
	Kind       string  `json:"kind"`
	Up         bool    `json:"up"`
	Restarts   float64 `json:"restarts"`
	RecordsIn  float64 `json:"records_in"`
	RecordsOut float64 `json:"records_out"`
	Errors     float64 `json:"errors"`
	Commits    float64 `json:"commits"`
}
