package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
)

func init() { registerCommand(newConfigCmd) }

// newConfigCmd is `katka config check`: load and validate a config file the
// way `katka serve` does, without touching the data directory, so that an
// edited /etc/katka/katka.yaml can be checked before a restart.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with katka's config file"}
	var cfgPath string
	check := &cobra.Command{
		Use:   "check",
		Short: "Load and validate a config file (exit 1 naming the field when it is wrong)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if err := validateConfig(cfg); err != nil {
				return err
			}
			name := cfgPath
			if name == "" {
				name = "built-in defaults"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (data_dir %s)\n", name, cfg.DataDir)
			return nil
		},
	}
	check.Flags().StringVar(&cfgPath, "config", "", "YAML config file (default: the built-in defaults)")
	cmd.AddCommand(check)
	return cmd
}

// validateConfig checks a loaded config; the error names every bad field on
// one line.
func validateConfig(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}
