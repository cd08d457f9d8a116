package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/config"
)

func init() { registerCommand(newUserCmd) }

// userFlags locate the user store: the data directory of --config, or
// --data-dir.
type userFlags struct {
	cfgPath, dataDir string
}

func (f *userFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.cfgPath, "config", "", "katka YAML config whose data_dir holds the users (default: built-in defaults)")
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", "", "data directory holding users.json (overrides data_dir)")
}

// store opens the user store and returns the config's iteration default.
func (f *userFlags) store() (*auth.Store, int, error) {
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		return nil, 0, err
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	s, err := auth.OpenStore(cfg.DataDir)
	return s, cfg.Auth.ScramIterations, err
}

func newUserCmd() *cobra.Command {
	var f userFlags
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the SCRAM users of the Kafka listeners (stored salted in <data_dir>/users.json)",
		Long: `Manage SCRAM users. Credentials are kept salted and iterated in
<data_dir>/users.json, never the password; a running katka picks changes up at
the next login. Works whether katka runs or not. Over the Kafka protocol the
same users are managed with AlterUserScramCredentials (kadm, kafka-configs).`,
	}
	f.add(cmd)
	var mechs []string
	var iterations int
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user or change its password (read from a prompt, or from stdin when it is not a terminal)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, defIter, err := f.store()
			if err != nil {
				return err
			}
			if iterations == 0 {
				iterations = defIter
			}
			var ms []auth.Mechanism
			for _, m := range mechs {
				mm, err := auth.ParseMechanism(m)
				if err != nil {
					return fmt.Errorf("--mechanism: %w", err)
				}
				ms = append(ms, mm)
			}
			pw, err := promptPassword(args[0])
			if err != nil {
				return err
			}
			if err := s.SetPassword(args[0], pw, iterations, ms...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s: %s credentials stored (%d iterations)\n", args[0], strings.Join(mechs, ", "), iterations)
			return nil
		},
	}
	add.Flags().StringSliceVar(&mechs, "mechanism", []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}, "SCRAM mechanisms to store credentials for (PLAIN logins use them too)")
	add.Flags().IntVar(&iterations, "iterations", 0, "PBKDF2 iterations, 4096..16384 (default: auth.scram_iterations)")
	var listOut *outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List users and the mechanisms they have credentials for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := f.store()
			if err != nil {
				return err
			}
			us, err := s.Users()
			if err != nil {
				return err
			}
			if listOut.json() {
				return writeJSON(cmd.OutOrStdout(), userRows(us))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tMECHANISMS")
			for _, u := range us {
				var ms []string
				for _, m := range u.Mechanisms {
					ms = append(ms, fmt.Sprintf("%s(%d)", m.Mechanism, m.Iterations))
				}
				fmt.Fprintf(tw, "%s\t%s\n", u.Name, strings.Join(ms, " "))
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"remove", "rm"},
		Short:   "Delete a user's credentials (its open connections stay logged in until they close)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := f.store()
			if err != nil {
				return err
			}
			if err := s.DeleteUser(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted\n", args[0])
			return nil
		},
	}
	listOut = addOutputFlag(list)
	cmd.AddCommand(add, list, del)
	return cmd
}

// promptPassword asks twice on a terminal; otherwise it reads the first line
// of stdin (for scripts: `printf '%s\n' "$PW" | katka user add alice`).
func promptPassword(user string) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		pw, err := readPassword(bufio.NewReader(os.Stdin))
		if err != nil {
			return "", fmt.Errorf("password from stdin: %w", err)
		}
		return pw, nil
	}
	fmt.Fprintf(os.Stderr, "Password for %s: ", user)
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, "Again: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", fmt.Errorf("passwords differ")
	}
	if len(a) == 0 {
		return "", fmt.Errorf("empty password")
	}
	return string(a), nil
}
