package httpapi

import "github.com/katka-io/katka/appliance/group"

// SetGroups gives the HTTP API the consumer-group coordinator of the Kafka
// listener (the broker's one coordinator): the console's group views and
// offset resets use it; without it they answer 503 not_running.
//
// (The restproxy branch defines the same setter for its v2 consumers; when
// both are merged, keep one setter and let the views read the same state.)
func (s *Server) SetGroups(f func() (*group.Coordinator, error)) {
	s.views.mu.Lock()
	s.views.groups = f
	s.views.mu.Unlock()
}
