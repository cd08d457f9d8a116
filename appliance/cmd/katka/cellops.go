package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// newCellRemoveNodeCmd is `katka cell remove-node ID`: the node leaves the
// cell for good (raft configuration and metadata; its partitions go to live
// nodes), through the HTTP API of any node of the cell.
func newCellRemoveNodeCmd() *cobra.Command {
	var httpAddr, token string
	cmd := &cobra.Command{
		Use:   "remove-node ID [--http HOST:PORT]",
		Short: "Remove a node from the cell for good: out of the controller, its partitions to live nodes",
		Long: "Remove a node from the cell for good. It leaves the raft configuration and the metadata,\n" +
			"its partitions get leaders among the live nodes, and its id is never admitted again\n" +
			"(a replacement gateway needs a bundle with a new id: katka cell issue).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 32)
			if err != nil || id < 0 {
				return fmt.Errorf("remove-node: %q is not a node id (a number, 0 or more)", args[0])
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete, fmt.Sprintf("http://%s/v1/cell/nodes/%d", httpAddr, id), nil)
			if err != nil {
				return err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("remove-node: %w (is katka running with http.addr %s?)", err, httpAddr)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusNoContent {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(body, &e) == nil && e.Error != "" {
					return fmt.Errorf("%s (%s)", e.Error, resp.Status)
				}
				return fmt.Errorf("remove-node %d: %s", id, resp.Status)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %d removed from the cell for good\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8092", "the HTTP address (http.addr) of any node of the cell")
	cmd.Flags().StringVar(&token, "token", "", "bearer token when http.tokens are set (an admin token)")
	return cmd
}
