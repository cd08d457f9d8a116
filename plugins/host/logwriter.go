package host

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
)

// logWriter turns a plugin's stderr into katka log lines. JSON lines in
// go-plugin's format (@level, @message, fields; what sdk.Logger writes) keep
// their level and fields; any other line is logged at info as is.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a runaway line without newline
		w.line(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *logWriter) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	var m map[string]any
	if b[0] == '{' && json.Unmarshal(b, &m) == nil {
		if msg, ok := m["@message"].(string); ok {
			lvl := slog.LevelInfo
			switch strings.ToLower(stringOf(m["@level"])) {
			case "trace", "debug":
				lvl = slog.LevelDebug
			case "warn", "warning":
				lvl = slog.LevelWarn
			case "error":
				lvl = slog.LevelError
			}
			attrs := make([]any, 0, 2*len(m))
			for k, v := range m {
				if !strings.HasPrefix(k, "@") {
					attrs = append(attrs, k, v)
				}
			}
			w.log.Log(context.Background(), lvl, msg, attrs...)
			return
		}
	}
	w.log.Info(string(b))
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}
