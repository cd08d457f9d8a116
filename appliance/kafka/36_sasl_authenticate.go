package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleSaslAuthenticate carries one SASL token of a login started by
// SaslHandshake v1. A failed login answers SASL_AUTHENTICATION_FAILED with
// Kafka's message after the failure delay, and the connection is closed
// right after the answer, as Kafka closes it.
func (s *Server) handleSaslAuthenticate(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if c.sasl == nil || c.sasl.authenticated || c.sasl.mech == "" || c.sasl.raw {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate is not expected in this SASL state"
		resp.ErrorMessage = &msg
		return resp, nil
	}
	out, done, err := s.saslStep(c, req.SASLAuthBytes)
	if err != nil {
		s.authFailed(c, string(c.sasl.mech), c.sasl.user, err)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := failMessage(c.sasl.mech)
		resp.ErrorMessage = &msg
		c.closeAfterWrite = true
		return resp, nil
	}
	resp.SASLAuthBytes = out
	if done {
		s.loggedIn(c)
	}
	return resp, nil
}
