// Command kfakecentral runs franz-go's kfake as a stand-in central Kafka
// cluster (in memory, transactions included) for trying the sync links by hand:
//
//	go run ./sync/mirror/mirrortest/kfakecentral -addr 127.0.0.1:19093
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19093", "listen address (host:port) of the one broker")
	flag.Parse()
	host, port, err := net.SplitHostPort(*addr)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		fmt.Fprintf(os.Stderr, "kfakecentral: -addr %q is not host:port\n", *addr)
		os.Exit(2)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kfakecentral: %v\n", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Printf("kfake central cluster listening on %v (in memory; Ctrl-C stops it)\n", c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
