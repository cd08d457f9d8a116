// Command jsonroute is a katka partitioner plugin: it routes each record by a
// field of its JSON value. See README.md.
package main

import "github.com/katka-io/katka/plugins/sdk"

func main() { sdk.Serve(&Partitioner{}) }
