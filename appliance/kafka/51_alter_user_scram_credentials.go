package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleAlterUserScramCredentials upserts and deletes SCRAM credentials
// (KIP-554): the client sends the salt, iteration count and salted password,
// katka keeps the derived stored and server keys. Each user's changes are
// applied together or not at all, with Kafka's per-user error codes.
func (s *Server) handleAlterUserScramCredentials(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	type userChanges struct {
		changes []auth.Change
		err     *kerr.Error
		msg     string
	}
	users := map[string]*userChanges{}
	var order []string
	seen := map[string]bool{}
	get := func(name string) *userChanges {
		u := users[name]
		if u == nil {
			u = &userChanges{}
			users[name] = u
			order = append(order, name)
		}
		return u
	}
	setErr := func(u *userChanges, e *kerr.Error, format string, args ...any) {
		if u.err == nil {
			u.err, u.msg = e, fmt.Sprintf(format, args...)
		}
	}
	check := func(u *userChanges, name string, code int8) auth.Mechanism {
		m := mechanismOfCode(code)
		switch key := fmt.Sprintf("%s/%d", name, code); {
		case name == "":
			setErr(u, kerr.UnacceptableCredential, "Username must not be empty")
		case m == "":
			setErr(u, kerr.UnsupportedSaslMechanism, "Unknown SCRAM mechanism %d", code)
		case seen[key]:
			setErr(u, kerr.DuplicateResource, "A user credential cannot be altered twice in the same request")
		default:
			seen[key] = true
		}
		return m
	}
	for _, d := range req.Deletions {
		u := get(d.Name)
		if m := check(u, d.Name, d.Mechanism); m != "" {
			u.changes = append(u.changes, auth.Change{User: d.Name, Mechanism: m})
		}
	}
	for _, up := range req.Upsertions {
		u := get(up.Name)
		m := check(u, up.Name, up.Mechanism)
		if m == "" {
			continue
		}
		cred, err := auth.CredentialFromSaltedPassword(m, up.Salt, up.SaltedPassword, int(up.Iterations))
		if err != nil {
			setErr(u, kerr.UnacceptableCredential, "%v", err)
			continue
		}
		u.changes = append(u.changes, auth.Change{User: up.Name, Mechanism: m, Cred: &cred})
	}
	allowed := s.mayManageUsers(ctx)
	for _, name := range order {
		u := users[name]
		switch {
		case s.cfg.Users == nil:
			setErr(u, kerr.UnsupportedSaslMechanism, "no user store on this broker")
		case !allowed:
			setErr(u, kerr.ClusterAuthorizationFailed, "altering SCRAM credentials needs a super user")
		case u.err == nil:
			if err := s.cfg.Users.Apply(u.changes...); errors.Is(err, auth.ErrNoCredential) {
				setErr(u, kerr.ResourceNotFound, "Attempt to delete a user credential that does not exist")
			} else if err != nil {
				setErr(u, kerr.UnknownServerError, "%v", err)
			} else {
				s.log.Info("kafka SCRAM credentials altered", "user", name, "changes", len(u.changes), "by", c.principal.String())
			}
		}
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = name
		if u.err != nil {
			r.ErrorCode = u.err.Code
			msg := u.msg
			r.ErrorMessage = &msg
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
