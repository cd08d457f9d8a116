// Command katka is the katka edge streaming broker: `katka serve` runs it, the
// other subcommands are tools that talk to a running katka.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// commands are added by other files of this package from init().
var commands []func() *cobra.Command

// registerCommand adds a subcommand to the CLI; called from init().
func registerCommand(f func() *cobra.Command) { commands = append(commands, f) }

// startKafka starts the Kafka protocol listener; set from init() by kafka.go.
var startKafka func(ctx context.Context, b *broker.Broker, cfg config.Config, reg prometheus.Registerer, log *slog.Logger, authz *auth.Authorizer) (io.Closer, error)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "katka:", err)
		os.Exit(1)
	}
}

// newRootCmd builds the katka command tree; cobra adds `katka completion
// bash|zsh|fish|powershell` and the hidden __complete it calls back.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "katka",
		Short:         "katka: a compact Kafka-compatible streaming broker for edge gateways",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, args []string) { fmt.Println("katka", version) },
	})
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}
