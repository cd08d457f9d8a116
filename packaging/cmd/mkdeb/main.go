// Command mkdeb builds katka's .deb packages from binaries already built
// (`make package` builds them and runs this):
//
//	go run ./packaging/cmd/mkdeb --version v1.2.3 --out bin/deb \
//	    amd64=bin/katka arm64=bin/katka-linux-arm64 armhf=bin/katka-linux-armv7
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/katka-io/katka/packaging"
)

func main() {
	version := flag.String("version", "dev", "katka version as git describe prints it")
	out := flag.String("out", "bin/deb", "directory for the .deb files")
	cfgPath := flag.String("config", "configs/katka.yaml", "configs/katka.yaml, from which /etc/katka/katka.yaml is derived")
	mtime := flag.Int64("mtime", 0, "file times as Unix seconds, e.g. the commit's (git log -1 --format=%ct); 0: 2026-01-01")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkdeb [--version V] [--out DIR] [--config FILE] ARCH=BINARY...  (ARCH: amd64, arm64, armhf)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	cfg, err := os.ReadFile(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	for _, a := range flag.Args() {
		arch, bin, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "mkdeb: %q: want ARCH=BINARY\n", a)
			os.Exit(2)
		}
		o := packaging.Options{Version: *version, Arch: arch, Binary: bin, Config: cfg, OutDir: *out}
		if *mtime > 0 {
			o.MTime = time.Unix(*mtime, 0).UTC()
		}
		path, err := packaging.Build(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkdeb:", err)
			os.Exit(1)
		}
		st, _ := os.Stat(path)
		fmt.Printf("%s (%d KiB)\n", path, st.Size()/1024)
	}
}
