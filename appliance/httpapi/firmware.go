package httpapi

import "net/http"

// AddRoutes lets a component that lives outside this package (the firmware
// store's device endpoints) register routes on the running server, behind the
// same request checks as the built-in ones. Safe while serving.
func (s *Server) AddRoutes(register func(mux *http.ServeMux)) {
	if s.mux != nil {
		register(s.mux)
	}
}
