package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// librdkafkaFinal builds the client-final message librdkafka 2.0 sends: its
// client nonce, then the server's combined nonce, proved with password.
func librdkafkaFinal(t *testing.T, cn, clientFirstBare, serverFirst, password string) string {
	t.Helper()
	var salt []byte
	var iters int
	for _, f := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(f, "s="):
			salt, _ = base64.StdEncoding.DecodeString(f[2:])
		case strings.HasPrefix(f, "i="):
			for _, d := range f[2:] {
				iters = iters*10 + int(d-'0')
			}
		}
	}
	salted, err := pbkdf2.Key(sha512.New, password, salt, iters, sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha512.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha512.Sum512(clientKey)
	withoutProof := "c=biws,r=" + cn + nonceAttr(serverFirst)
	sig := mac(stored[:], clientFirstBare+","+serverFirst+","+withoutProof)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func nonceAttr(msg string) string {
	for _, f := range strings.Split(msg, ",") {
		if v, ok := strings.CutPrefix(f, "r="); ok {
			return v
		}
	}
	return ""
}

// TestVerifyScramFinalDoubledNonce: the client-final of librdkafka 2.0
// (doubled nonce) is accepted with the right password, as Apache Kafka
// accepts it, and refused with a wrong one or a nonce not ending with the
// server's.
func TestVerifyScramFinalDoubledNonce(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "alice-secret", 0, ScramSHA512); err != nil {
		t.Fatal(err)
	}
	srv, err := s.ScramServer(ScramSHA512)
	if err != nil {
		t.Fatal(err)
	}
	const cn = "fyko+d2lbbFgONRv9qkxdawL"
	first := "n,,n=alice,r=" + cn
	s1, err := srv.NewConversation().Step(first)
	if err != nil {
		t.Fatal(err)
	}
	final := librdkafkaFinal(t, cn, first[3:], s1, "alice-secret")
	out, err := s.VerifyScramFinal(ScramSHA512, "alice", first, s1, final)
	if err != nil || !strings.HasPrefix(out, "v=") {
		t.Fatalf("right password refused: %q %v", out, err)
	}
	bad := librdkafkaFinal(t, cn, first[3:], s1, "wrong")
	if _, err := s.VerifyScramFinal(ScramSHA512, "alice", first, s1, bad); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	other := strings.Replace(final, nonceAttr(s1), nonceAttr(s1)+"x", 1)
	if _, err := s.VerifyScramFinal(ScramSHA512, "alice", first, s1, other); err == nil {
		t.Fatal("foreign nonce accepted")
	}
}
