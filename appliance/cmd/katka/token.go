package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func init() { registerCommand(newTokenCmd) }

// newTokenCmd makes HTTP bearer tokens and the hashes http.tokens stores.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make HTTP API bearer tokens and their SHA-256 for http.tokens",
	}
	var name, role string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new random token and the http.tokens entry that accepts it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return fmt.Errorf("random token: %w", err)
			}
			tok := "katka_" + base64.RawURLEncoding.EncodeToString(b)
			fmt.Fprintf(cmd.OutOrStdout(), "token: %s\n# in katka.yaml under http.tokens:\n- name: %s\n  sha256: %s\n  role: %s\n", tok, name, hashToken(tok), role)
			return nil
		},
	}
	gen.Flags().StringVar(&name, "name", "client", "name of the token (its principal for ACLs is User:<name>)")
	gen.Flags().StringVar(&role, "role", "read", "role: read or admin")
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Print the SHA-256 of a token read from stdin (one line), for http.tokens[].sha256",
		Example: `  printf '%s\n' "$TOKEN" | katka token hash
  katka token hash < token.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := readToken(cmd.InOrStdin())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), hashToken(tok))
			return nil
		},
	}
	cmd.AddCommand(gen, hash)
	return cmd
}

// hashToken is the hex SHA-256 of a token, the form http.tokens stores.
func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// readToken reads one line from r (not a flag, so the token never shows in ps).
func readToken(r io.Reader) (string, error) {
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(os.Stderr, "token: ")
		}
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok := strings.TrimRight(line, "\r\n")
	if tok == "" {
		return "", errors.New("no token on stdin")
	}
	return tok, nil
}
