package redact_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPackagesLinkNoDriverTheyDoNotNeed: each database adapter is its own
// package so that an import pulls only the driver it needs; the server,
// auth and webhook packages show DSNs and URLs (through this package)
// and must link none.
func TestPackagesLinkNoDriverTheyDoNotNeed(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to list dependencies")
	}
	for _, pkg := range []string{"github.com/openlivesync/livesync", "github.com/openlivesync/livesync/auth", "github.com/openlivesync/livesync/webhook"} {
		out, err := exec.Command(gotool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "jackc/pgx") || strings.Contains(dep, "go-sql-driver/mysql") || dep == "modernc.org/sqlite" {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
