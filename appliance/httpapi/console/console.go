// Package console is katka's web console: static pages (plain ES modules and
// CSS, no build step) embedded in the binary and served at / on the HTTP
// listener. The pages hold no data; they read and write through the /v1 JSON
// API with the visitor's token, so they are served without a credential.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed web
var files embed.FS

// Prefix is where the console's assets are served; the page itself is at /.
const Prefix = "/console/"

// IsPage reports whether path is one of the console's static files (the page
// at / or an asset under Prefix), which need no credential.
func IsPage(path string) bool { return path == "/" || strings.HasPrefix(path, Prefix) }

// Routes adds the console to mux: GET / serves the page, GET /console/
// its scripts and styles, and GET /console/auth.json whether the API wants
// a token (tokenRequired), so the page asks for one before its first call.
func Routes(mux *http.ServeMux, tokenRequired func() bool) {
	web, _ := fs.Sub(files, "web") // the embedded folder exists: cannot fail
	assets := http.StripPrefix(Prefix, http.FileServerFS(web))
	mux.Handle("GET "+Prefix, headers(assets))
	mux.Handle("GET "+Prefix+"auth.json", headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			TokenRequired bool `json:"token_required"`
		}{tokenRequired()})
	})))
	mux.Handle("GET /{$}", headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, web, "index.html")
	})))
}

// headers adds a strict Content-Security-Policy (only the console's own
// scripts, styles and API; no inline script) and keeps other sites from
// framing the page.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
