package httpapi

import "github.com/katka-io/katka/appliance/group"

// groupsSource is the group coordinator source given by SetGroups (restproxy.go),
// nil without a Kafka listener: the REST proxy's v2 consumers, the console's
// group views and its offset resets all use the same coordinator.
func (s *Server) groupsSource() func() (*group.Coordinator, error) {
	if s.rp == nil {
		return nil
	}
	if f := s.rp.groups.Load(); f != nil {
		return *f
	}
	return nil
}
