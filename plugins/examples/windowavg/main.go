// Command windowavg is a katka processor plugin: the average of a numeric
// field per key per tumbling window of record time, one output record per
// window, with a grace period for late records. See README.md.
package main

import "github.com/katka-io/katka/plugins/sdk"

func main() { sdk.Serve(&Processor{}) }
