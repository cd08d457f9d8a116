package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/cluster"
)

// Cell is the cell (appliance/cluster) as the HTTP API serves it.
type Cell interface {
	// Status is the cell as this node sees it.
	Status() cluster.Status
	// RemoveNode removes a node from the cell for good.
	RemoveNode(ctx context.Context, id int32) error
}

// cellRef boxes a Cell for the atomic pointer.
type cellRef struct{ c Cell }

// SetCell serves c at GET /v1/cell (also GET /v1/status/cell) and
// DELETE /v1/cell/nodes/{id}; without it they answer 404 not_running.
func (s *Server) SetCell(c Cell) {
	s.cell.Store(&cellRef{c})
	s.AddStatus("cell", func() any { return c.Status() })
}

// cellOr404 returns the cell, or answers 404 when this katka is in none.
func (s *Server) cellOr404(w http.ResponseWriter) Cell {
	ref := s.cell.Load()
	if ref == nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: "this katka is not in a cell (no cell: section in its config)", Code: "not_running"})
		return nil
	}
	return ref.c
}

// getCell is GET /v1/cell: nodes, addresses, roles, raft leader and term,
// last contact and partitions led per node.
func (s *Server) getCell(w http.ResponseWriter, r *http.Request) {
	if c := s.cellOr404(w); c != nil {
		writeJSON(w, http.StatusOK, c.Status())
	}
}

// removeCellNode is DELETE /v1/cell/nodes/{id}: `katka cell remove-node`. It
// needs ALTER on the cluster when authorization is on.
func (s *Server) removeCellNode(w http.ResponseWriter, r *http.Request) {
	c := s.cellOr404(w)
	if c == nil {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
	if err != nil || id < 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("node id %q is not a node id (a number, 0 or more)", r.PathValue("id")), Code: "bad_request"})
		return
	}
	if !s.allowed(r, auth.ResourceCluster, auth.ClusterName, auth.OpAlter) {
		p, _ := principalOf(r)
		writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("%s may not alter the cluster", p), Code: "cluster_authorization_failed"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	switch err := c.RemoveNode(ctx, int32(id)); {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, cluster.ErrUnknownNode):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Code: "unknown_node"})
	case errors.Is(err, cluster.ErrNoController), errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Code: "no_controller"})
	default:
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error(), Code: "internal"})
	}
}
