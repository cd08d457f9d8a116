package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleSaslHandshake picks the SASL mechanism of a login. Version 0 means
// the tokens that follow come as bare size-prefixed frames (the framing old
// clients and sarama's v0 use); version 1 means they come in SaslAuthenticate
// requests. On a listener without SASL, or once logged in, it answers
// ILLEGAL_SASL_STATE; an unknown mechanism gets UNSUPPORTED_SASL_MECHANISM
// and the list of those offered, as Kafka answers.
func (s *Server) handleSaslHandshake(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	if c.sasl == nil || c.sasl.authenticated || c.sasl.mech != "" {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, nil
	}
	resp.SupportedMechanisms = c.lis.mechanismNames()
	if !c.lis.offers(req.Mechanism) {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, nil
	}
	c.sasl.mech = auth.Mechanism(req.Mechanism)
	c.sasl.raw = req.Version == 0
	return resp, nil
}
