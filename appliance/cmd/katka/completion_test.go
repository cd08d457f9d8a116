package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestBashCompletion: the script `katka completion bash` prints, sourced in
// a real bash, completes subcommands and the values of --output by calling
// the real binary back.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	// cobra's bash script needs Debian's bash-completion (make test-deps installs it).
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("bash-completion is not installed (apt-get install bash-completion): %v", err)
	}
	script := filepath.Join(t.TempDir(), "katka.bash")
	if out, err := exec.Command(katkaBin, "completion", "bash").Output(); err != nil {
		t.Fatalf("katka completion bash: %v", err)
	} else if err := writeFile(script, out); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS[0] is the binary under test: the script calls it back
		// with __complete.
		line := katkaBin + " " + strings.Join(words, " ")
		prog := `source ` + bashCompletion + `; source "$1"; compopt() { :; }; COMP_WORDS=("$2"`
		for i := range words {
			prog += ` "${` + itoa(i+3) + `}"`
		}
		prog += `); COMP_CWORD=` + itoa(len(words)) + `; COMP_LINE="$LINE"; COMP_POINT=${#COMP_LINE}; __start_katka; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", prog, "bash", script, katkaBin}, words...)...)
		cmd.Env = append(cmd.Environ(), "LINE="+line)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("fir"); !slices.Equal(got, []string{"firmware"}) {
		t.Errorf("katka fir<TAB> = %q, want [firmware]", got)
	}
	if got := complete("topic", "list", "-o", ""); !slices.Equal(got, []string{"table", "json"}) {
		t.Errorf("katka topic list -o <TAB> = %q, want [table json]", got)
	}
	for _, sh := range []string{"zsh", "fish"} {
		out, err := exec.Command(katkaBin, "completion", sh).Output()
		if err != nil || !strings.Contains(string(out), "__complete") {
			t.Errorf("katka completion %s: %v (%d bytes)", sh, err, len(out))
		}
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

func itoa(i int) string { return strconv.Itoa(i) }
