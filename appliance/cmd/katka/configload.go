package main

import (
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
)

// loadConfigDataDir loads cfgPath (the built-in defaults when empty) and
// applies --data-dir when the command was given one.
func loadConfigDataDir(cmd *cobra.Command, cfgPath, dataDir string) (config.Config, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return cfg, err
	}
	if cmd.Flags().Changed("data-dir") {
		cfg.DataDir = dataDir
	}
	return cfg, nil
}
