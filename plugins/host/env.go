package host

import "os"

// BaseEnv names the variables of katka's environment every plugin gets (when
// set): enough to find programs, a home and temporary directory, and the
// locale and time zone. Anything else katka's environment holds (it may hold
// credentials) reaches a plugin only if its manifest lists it under env.
var BaseEnv = []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "LC_CTYPE"}

// pluginEnv is the environment a plugin starts with: BaseEnv and the
// manifest's env names taken from lookup (katka's environment), plus
// KATKA_PLUGIN_DIR. go-plugin adds its handshake variables (the magic
// cookie, PLUGIN_PROTOCOL_VERSIONS, PLUGIN_MIN_PORT, PLUGIN_MAX_PORT).
func pluginEnv(m Manifest, lookup func(string) (string, bool)) []string {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env := make([]string, 0, len(BaseEnv)+len(m.Env)+1)
	seen := map[string]bool{}
	for _, names := range [][]string{BaseEnv, m.Env} {
		for _, n := range names {
			if seen[n] || !checkEnvName(n) {
				continue
			}
			seen[n] = true
			if v, ok := lookup(n); ok {
				env = append(env, n+"="+v)
			}
		}
	}
	return append(env, "KATKA_PLUGIN_DIR="+m.Dir)
}
