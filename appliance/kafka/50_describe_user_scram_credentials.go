package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// scramMechanismCodes are the mechanism numbers of KIP-554.
var scramMechanismCodes = map[auth.Mechanism]int8{auth.ScramSHA256: 1, auth.ScramSHA512: 2}

// mechanismOfCode is the mechanism of a KIP-554 number, "" if unknown.
func mechanismOfCode(code int8) auth.Mechanism {
	for m, c := range scramMechanismCodes {
		if c == code {
			return m
		}
	}
	return ""
}

// mayManageUsers reports whether the request's principal may read or change
// SCRAM credentials: with auth.super_users set only a super user (or katka
// itself) may; without, authorization is off and anyone may, as Kafka
// without an authorizer.
func (s *Server) mayManageUsers(ctx context.Context) bool {
	if len(s.cfg.SuperUsers) == 0 {
		return true
	}
	p := auth.PrincipalFrom(ctx)
	return p == auth.Internal || slices.Contains(s.cfg.SuperUsers, p)
}

// handleDescribeUserScramCredentials lists users and the mechanisms and
// iteration counts of their credentials (KIP-554), never the credentials.
func (s *Server) handleDescribeUserScramCredentials(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	fail := func(e *kerr.Error, msg string) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = e.Code, &msg
		return resp, nil
	}
	if s.cfg.Users == nil {
		return fail(kerr.UnsupportedSaslMechanism, "no user store on this broker")
	}
	if !s.mayManageUsers(ctx) {
		return fail(kerr.ClusterAuthorizationFailed, "describing SCRAM credentials needs a super user")
	}
	var names []string
	seen := map[string]int{}
	for _, u := range req.Users {
		seen[u.Name]++
		names = append(names, u.Name)
	}
	infos, err := s.cfg.Users.Users(names...)
	if err != nil {
		return fail(kerr.UnknownServerError, err.Error())
	}
	found := map[string]auth.UserInfo{}
	for _, ui := range infos {
		found[ui.Name] = ui
	}
	add := func(ui auth.UserInfo) {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = ui.Name
		for _, mi := range ui.Mechanisms {
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = scramMechanismCodes[mi.Mechanism], int32(mi.Iterations)
			r.CredentialInfos = append(r.CredentialInfos, ci)
		}
		resp.Results = append(resp.Results, r)
	}
	if len(req.Users) == 0 {
		for _, ui := range infos {
			add(ui)
		}
		return resp, nil
	}
	done := map[string]bool{}
	for _, n := range names {
		if done[n] {
			continue
		}
		done[n] = true
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = n
		switch ui, ok := found[n]; {
		case seen[n] > 1:
			r.ErrorCode = kerr.DuplicateResource.Code
			msg := "Cannot describe SCRAM credentials for the same user twice in a single request: " + n
			r.ErrorMessage = &msg
		case !ok:
			r.ErrorCode = kerr.ResourceNotFound.Code
			msg := "Attempt to describe a user credential that does not exist: " + n
			r.ErrorMessage = &msg
		default:
			add(ui)
			continue
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
