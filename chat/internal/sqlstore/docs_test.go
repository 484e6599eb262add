package sqlstore

import (
	"strings"
	"testing"
)

func TestDocsTableName(t *testing.T) {
	if got := DocsTableName("chat", 63); got != "chat_docs" {
		t.Errorf("DocsTableName(chat) = %q, want chat_docs", got)
	}
	long := "t" + strings.Repeat("x", 61)
	a, b := DocsTableName(long+"a", 63), DocsTableName(long+"b", 63)
	for _, got := range []string{a, b} {
		if len(got) > 63 || !strings.HasSuffix(got, "_docs") {
			t.Errorf("DocsTableName of a 63-character table = %q (%d characters), want at most 63 ending in _docs", got, len(got))
		}
	}
	if a == b {
		t.Errorf("two long tables share the documents table %q", a)
	}
	if DocsTableName(long+"a", 63) == OutboxTableName(long+"a", 63) {
		t.Error("the documents and the outbox of a long table share a name")
	}
}
