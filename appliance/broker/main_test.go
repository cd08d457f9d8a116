package broker

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain keeps benchmark and test output readable: only warnings and errors.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
