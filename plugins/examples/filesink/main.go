// Command filesink is a katka sink plugin: it appends every record to one
// file per topic (JSON lines), fsyncs before acknowledging, and rotates a file
// when it reaches rotate_bytes. See README.md.
package main

import "github.com/katka-io/katka/plugins/sdk"

func main() { sdk.Serve(&Sink{}) }
