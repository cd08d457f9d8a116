package auth

import (
	"crypto/pbkdf2"
	"errors"
	"os"
	"strings"
	"testing"
)

// scramLogin runs a whole SCRAM conversation of a real xdg-go client against
// the store's server and reports whether the server accepted it.
func scramLogin(t *testing.T, s *Store, m Mechanism, user, pass string) bool {
	t.Helper()
	hg, _ := m.hash()
	cl, err := hg.NewClient(user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s.ScramServer(m)
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := cl.NewConversation(), srv.NewConversation()
	msg, _ := cc.Step("")
	for !sc.Done() {
		resp, err := sc.Step(msg)
		if err != nil {
			return false
		}
		if msg, err = cc.Step(resp); err != nil {
			return false
		}
	}
	return sc.Valid() && cc.Valid() && sc.Username() == user
}

func TestStoreScramAndPlain(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "s3cret", 0, ScramSHA256, ScramSHA512); err != nil {
		t.Fatal(err)
	}
	for _, m := range ScramMechanisms {
		if !scramLogin(t, s, m, "alice", "s3cret") {
			t.Errorf("%s: right password refused", m)
		}
		if scramLogin(t, s, m, "alice", "wrong") {
			t.Errorf("%s: wrong password accepted", m)
		}
		if scramLogin(t, s, m, "bob", "s3cret") {
			t.Errorf("%s: unknown user accepted", m)
		}
	}
	if err := s.CheckPlain("alice", "s3cret"); err != nil {
		t.Errorf("PLAIN right password: %v", err)
	}
	if err := s.CheckPlain("alice", "nope"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("PLAIN wrong password: %v", err)
	}
	if err := s.CheckPlain("bob", "s3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("PLAIN unknown user: %v", err)
	}

	// The file holds salted keys, never the password; 4096 iterations.
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") {
		t.Fatal("password stored in the clear")
	}
	if !strings.Contains(string(b), `"iterations": 4096`) {
		t.Fatalf("default iterations not 4096:\n%s", b)
	}

	// A second store on the same dir (another process: katka user) sees the
	// change, and the first sees the second's change.
	s2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.SetPassword("bob", "pw-bob-1", 8192, ScramSHA512); err != nil {
		t.Fatal(err)
	}
	if !scramLogin(t, s, ScramSHA512, "bob", "pw-bob-1") {
		t.Fatal("store did not reload a change made through another store")
	}
	us, _ := s.Users()
	if len(us) != 2 || us[1].Name != "bob" || us[1].Mechanisms[0].Iterations != 8192 {
		t.Fatalf("users: %+v", us)
	}
	if err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if err := s2.CheckPlain("alice", "s3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("deleted user still logs in: %v", err)
	}
	if err := s.DeleteUser("alice"); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("deleting a missing user: %v", err)
	}
	if err := s.SetPassword("x", "y", 100, ScramSHA256); err == nil {
		t.Fatal("100 iterations accepted")
	}
}

// TestSaltedPasswordCredential: the credential built from a salted password
// (AlterUserScramCredentials' form) equals the one derived from the password.
func TestSaltedPasswordCredential(t *testing.T) {
	salt := []byte("0123456789abcdef")
	for _, m := range ScramMechanisms {
		want, err := DeriveCredential(m, "u", "pw", salt, 4096)
		if err != nil {
			t.Fatal(err)
		}
		hg, _ := m.hash()
		salted, err := pbkdf2.Key(hg, "pw", salt, 4096, hg().Size())
		if err != nil {
			t.Fatal(err)
		}
		got, err := CredentialFromSaltedPassword(m, salt, salted, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.StoredKey) != string(want.StoredKey) || string(got.ServerKey) != string(want.ServerKey) {
			t.Fatalf("%s: credentials differ", m)
		}
	}
}
