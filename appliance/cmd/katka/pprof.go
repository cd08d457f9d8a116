package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// pprofEnv names the environment variable that, when set to host:port, makes
// `katka serve` answer Go's /debug/pprof/ there (CPU, heap, allocations,
// mutex, block and goroutine profiles) so a slow or large broker can be
// profiled where it runs, as nats-server's prof_port does. It is off unless
// set and carries no authentication: bind it to 127.0.0.1.
const pprofEnv = "KATKA_PPROF_ADDR"

// startPprof serves the profiles on $KATKA_PPROF_ADDR, with mutex and block
// sampling on, and returns a function that stops it (nil when unset).
func startPprof(log *slog.Logger) (func(), error) {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errors.Join(errors.New("listen "+pprofEnv+"="+addr), err)
	}
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(100_000) // one sample per 100 µs blocked
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	log.Warn("profiling endpoint on, unauthenticated", "addr", ln.Addr().String(), "env", pprofEnv)
	return func() { srv.Close() }, nil
}
