package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// Mechanism is a SASL mechanism name as Kafka spells it.
type Mechanism string

// The SASL mechanisms katka's Kafka listener speaks. PLAIN is checked against
// the SCRAM credentials; only SCRAM mechanisms have credentials of their own.
const (
	Plain       Mechanism = "PLAIN"
	ScramSHA256 Mechanism = "SCRAM-SHA-256"
	ScramSHA512 Mechanism = "SCRAM-SHA-512"
)

// ScramMechanisms are the mechanisms a credential can be stored for, in the
// order PLAIN tries them.
var ScramMechanisms = []Mechanism{ScramSHA512, ScramSHA256}

// ParseMechanism accepts a SCRAM mechanism name (case-insensitive).
func ParseMechanism(s string) (Mechanism, error) {
	for _, m := range ScramMechanisms {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", s)
}

// hash is the SCRAM hash of m.
func (m Mechanism) hash() (scram.HashGeneratorFcn, error) {
	switch m {
	case ScramSHA256:
		return scram.SHA256, nil
	case ScramSHA512:
		return scram.SHA512, nil
	}
	return nil, fmt.Errorf("mechanism %q has no SCRAM credentials (want SCRAM-SHA-256 or SCRAM-SHA-512)", string(m))
}

// NewCredential derives the stored SCRAM credential of user's password for m
// with a fresh 32-byte random salt and iterations rounds (0: DefaultIterations).
func NewCredential(m Mechanism, user, password string, iterations int) (Credential, error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return Credential{}, fmt.Errorf("salt: %w", err)
	}
	return DeriveCredential(m, user, password, salt, iterations)
}

// DeriveCredential derives the stored SCRAM credential of a password with a
// given salt, as a SCRAM client would (SASLprep applied).
func DeriveCredential(m Mechanism, user, password string, salt []byte, iterations int) (Credential, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return Credential{}, fmt.Errorf("iterations %d out of range (allowed: %d..%d)", iterations, MinIterations, MaxIterations)
	}
	hg, err := m.hash()
	if err != nil {
		return Credential{}, err
	}
	cl, err := hg.NewClient(user, password, "")
	if err != nil {
		return Credential{}, fmt.Errorf("scram: %w", err)
	}
	sc := cl.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	return Credential{Iterations: iterations, Salt: salt, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}, nil
}

// CredentialFromSaltedPassword builds the stored credential from a salted
// password as AlterUserScramCredentials carries it (the client did PBKDF2).
func CredentialFromSaltedPassword(m Mechanism, salt, salted []byte, iterations int) (Credential, error) {
	hg, err := m.hash()
	if err != nil {
		return Credential{}, err
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return Credential{}, fmt.Errorf("iterations %d out of range (allowed: %d..%d)", iterations, MinIterations, MaxIterations)
	}
	if len(salt) == 0 || len(salted) == 0 {
		return Credential{}, errors.New("empty salt or salted password")
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(hg, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	h := hg()
	h.Write(clientKey)
	return Credential{Iterations: iterations, Salt: append([]byte(nil), salt...), StoredKey: h.Sum(nil), ServerKey: mac(salted, "Server Key")}, nil
}

// ErrBadCredentials is the one answer to a wrong password or an unknown user,
// so a client cannot tell which it was.
var ErrBadCredentials = errors.New("invalid credentials")

// ScramServer starts SCRAM conversations for m against the store.
func (s *Store) ScramServer(m Mechanism) (*scram.Server, error) {
	hg, err := m.hash()
	if err != nil {
		return nil, err
	}
	return hg.NewServer(func(user string) (scram.StoredCredentials, error) {
		c, ok, err := s.Lookup(user, m)
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		if !ok {
			return scram.StoredCredentials{}, ErrBadCredentials
		}
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations},
			StoredKey:  c.StoredKey, ServerKey: c.ServerKey,
		}, nil
	})
}

// CheckPlain checks a PLAIN login against user's SCRAM credential (SHA-512
// first, then SHA-256). It returns ErrBadCredentials for a wrong password or
// an unknown user.
func (s *Store) CheckPlain(user, password string) error {
	for _, m := range ScramMechanisms {
		c, ok, err := s.Lookup(user, m)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		got, err := DeriveCredential(m, user, password, c.Salt, c.Iterations)
		if err != nil {
			return ErrBadCredentials
		}
		if hmac.Equal(got.StoredKey, c.StoredKey) {
			return nil
		}
		return ErrBadCredentials
	}
	return ErrBadCredentials
}
