// Command filetail is a katka source plugin: it tails a text file and emits
// each new line as a record; its position is the byte offset after the last
// emitted line, so katka resumes there after a restart. See README.md.
package main

import "github.com/katka-io/katka/plugins/sdk"

func main() { sdk.Serve(&Source{}) }
