package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The deployment files cannot be exercised here (no container engine, no
// systemd to boot), so these tests check what would break them quietly:
// a flag or variable the binary does not know, a root user, a missing
// health check.

// repoFile reads a file of the repository's root.
func repoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// knownFlags is the binary's flag set, as -h lists it.
func knownFlags(t *testing.T) map[string]bool {
	t.Helper()
	var usage bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, noEnv, &usage); err != errHelp {
		t.Fatalf("-h: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(usage.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["addr"] || !flags["tls-cert"] || !flags["healthcheck"] {
		t.Fatalf("flags read from -h: %v", flags)
	}
	return flags
}

var flagToken = regexp.MustCompile(`^--?([a-z][a-z0-9-]*)(=.*)?$`)

// argFlags returns the flags in an argument list for the binary.
func argFlags(args []string) []string {
	var out []string
	for _, a := range args {
		if m := flagToken.FindStringSubmatch(a); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// binaryArgs returns the arguments a JSON (or YAML flow) array passes to
// the binary: those after the program when it is the binary (first, or
// after "CMD" in a health check), or all of them when the array is
// arguments to the image's entrypoint (it starts with a flag). Arrays
// that run other programs (pg_isready, redis-server) give none.
func binaryArgs(t *testing.T, line string) []string {
	t.Helper()
	i, j := strings.Index(line, "["), strings.LastIndex(line, "]")
	if i < 0 || j < i {
		return nil
	}
	var arr []string
	if err := json.Unmarshal([]byte(line[i:j+1]), &arr); err != nil {
		t.Fatalf("not an array of strings: %s", line)
	}
	if len(arr) > 1 && arr[0] == "CMD" {
		arr = arr[1:]
	}
	if len(arr) > 0 && filepath.Base(arr[0]) == "openlivesync" {
		return arr[1:]
	}
	if len(arr) > 0 && strings.HasPrefix(arr[0], "-") {
		return arr
	}
	return nil
}

// checkNames fails for a flag or an OPENLIVESYNC_ variable in text that
// the binary does not read.
func checkNames(t *testing.T, file, text string, flags []string) {
	t.Helper()
	known := knownFlags(t)
	for _, f := range flags {
		if !known[f] {
			t.Errorf("%s: -%s is not a flag of the binary", file, f)
		}
	}
	for _, v := range regexp.MustCompile(`OPENLIVESYNC_[A-Z0-9_]+`).FindAllString(text, -1) {
		f := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, "OPENLIVESYNC_"), "_", "-"))
		if !known[f] || commandFlags[f] {
			t.Errorf("%s: %s is not read by the binary (no flag -%s that the environment sets)", file, v, f)
		}
	}
}

func TestDockerfile(t *testing.T) {
	text := repoFile(t, "Dockerfile")
	// Instructions, continuation lines joined, comments dropped.
	var instr []string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			instr = append(instr, line)
		}
	}
	var stages [][]string
	for _, in := range instr {
		if strings.HasPrefix(strings.ToUpper(in), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", in)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 || !strings.HasPrefix(stages[0][0], "FROM golang:1.26") {
		t.Fatalf("want a golang:1.26 build stage and a final stage, got %d stages", len(stages))
	}
	var build string
	for _, in := range stages[0] {
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "go build") {
			build = strings.TrimPrefix(in, "RUN ")
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-trimpath") {
		t.Errorf("build stage's go build %q: want CGO_ENABLED=0 and -trimpath", build)
	}
	if !strings.Contains(repoFile(t, "README.md"), build) {
		t.Errorf("the README does not document the image's build, %q", build)
	}

	final := stages[len(stages)-1]
	var user, expose, health bool
	var flags []string
	for _, in := range final {
		word, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(word) {
		case "USER":
			name, _, _ := strings.Cut(strings.TrimSpace(rest), ":")
			user = name != "root" && name != "0" && name != ""
		case "EXPOSE":
			expose = expose || strings.Contains(" "+rest+" ", " 3000 ") || strings.Contains(" "+rest+" ", " 3000/tcp ")
		case "HEALTHCHECK":
			args := binaryArgs(t, rest)
			health = len(args) > 0 && slices.Contains(argFlags(args), "healthcheck")
			flags = append(flags, argFlags(args)...)
		case "CMD", "ENTRYPOINT":
			flags = append(flags, argFlags(binaryArgs(t, rest))...)
			if strings.ToUpper(word) == "ENTRYPOINT" && !strings.Contains(rest, `"/openlivesync"`) {
				t.Errorf("ENTRYPOINT %s: want the binary", rest)
			}
		}
	}
	if !user {
		t.Error("the final stage has no non-root USER")
	}
	if !expose {
		t.Error("the final stage does not EXPOSE 3000")
	}
	if !health {
		t.Error("the final stage has no HEALTHCHECK running openlivesync -healthcheck")
	}
	checkNames(t, "Dockerfile", text, flags)
}

func TestComposeFile(t *testing.T) {
	text := repoFile(t, "docker-compose.yml")
	var flags []string
	for _, line := range strings.Split(text, "\n") {
		key, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (key == "command" || key == "test" || key == "entrypoint") {
			flags = append(flags, argFlags(binaryArgs(t, rest))...)
		}
	}
	checkNames(t, "docker-compose.yml", text, flags)
	for _, want := range []string{"OPENLIVESYNC_STORE: postgres://", "OPENLIVESYNC_REDIS: redis://", "image: postgres:", "image: redis:", "node1:", "node2:"} {
		if !strings.Contains(text, want) {
			t.Errorf("docker-compose.yml: no %q", want)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	text := repoFile(t, "docs/openlivesync.service")
	var flags []string
	settings := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
		// Commented-out examples count: they are there to be uncommented.
		if v, ok := strings.CutPrefix(strings.TrimLeft(line, "# "), "ExecStart="); ok {
			if f := strings.Fields(v); len(f) > 1 && filepath.Base(f[0]) == "openlivesync" {
				flags = append(flags, argFlags(f[1:])...)
			}
		}
	}
	checkNames(t, "docs/openlivesync.service", text, flags)
	for k, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "StateDirectory": "openlivesync"} {
		if settings[k] != want {
			t.Errorf("docs/openlivesync.service: %s=%q, want %q", k, settings[k], want)
		}
	}
	if !strings.Contains(text, "OPENLIVESYNC_STORE=sqlite:/var/lib/"+settings["StateDirectory"]+"/") {
		t.Error("docs/openlivesync.service: the SQLite store is not in the state directory")
	}
}
