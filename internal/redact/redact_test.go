package redact

import (
	"strings"
	"testing"
)

// TestDSNMasksMistypedSchemes: a store or Redis value whose scheme has a
// typo is of no form DSN knows, and is echoed in the error that says so;
// whatever precedes its last '@' may be a password, and is masked.
func TestDSNMasksMistypedSchemes(t *testing.T) {
	for in, want := range map[string]string{
		"postgres:/postgres:hunter2@127.0.0.1/test": "postgres:/xxxxx@127.0.0.1/test",
		"postgres//postgres:hunter2@127.0.0.1/test": "postgres//xxxxx@127.0.0.1/test",
		"mysql:/root:hunter2@127.0.0.1:3306/test":   "mysql:/xxxxx@127.0.0.1:3306/test",
		"mysql//root:hunter2@127.0.0.1:3306/test":   "mysql//xxxxx@127.0.0.1:3306/test",
		"postgres:hunter2@127.0.0.1/test":           "postgres:xxxxx@127.0.0.1/test",
		":hunter2@127.0.0.1/test":                   "xxxxx@127.0.0.1/test",
		"hunter2@127.0.0.1/test":                    "xxxxx@127.0.0.1/test",
		"postgres:/u:p@hunter2@127.0.0.1/test":      "postgres:/xxxxx@127.0.0.1/test",
		"memory":                                    "memory",
		"postgres:/127.0.0.1/test":                  "postgres:/127.0.0.1/test",
	} {
		got := DSN(in)
		if got != want {
			t.Errorf("DSN(%q) = %q, want %q", in, got, want)
		}
		if scrubbed := Scrub(in, "quoted: "+in); strings.Contains(scrubbed, "hunter2") {
			t.Errorf("Scrub(%q) left the password: %q", in, scrubbed)
		}
	}
}
