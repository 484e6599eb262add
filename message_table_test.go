package livesync

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMessageTable: every client → server message type that package
// protocol defines has exactly one row in clientMessages, with a handler,
// and the fast path, the dispatcher and the metrics agree on it.
func TestMessageTable(t *testing.T) {
	var want []string
	f, err := parser.ParseFile(token.NewFileSet(), "protocol/protocol.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || g.Doc == nil || !strings.HasPrefix(g.Doc.Text(), "Client → server") {
			continue
		}
		for _, spec := range g.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				s, err := strconv.Unquote(v.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			}
		}
	}
	if len(want) == 0 {
		t.Fatal(`no "Client → server" constants found in protocol/protocol.go`)
	}
	var got []string
	for i, row := range clientMessages {
		if row.typ == "" || row.handle == nil {
			t.Errorf("row %d of clientMessages is empty", i)
			continue
		}
		got = append(got, row.typ)
		if messageKind(row.typ) != i || knownType([]byte(row.typ)) != row.typ || messageTypeLabel(i) != row.typ {
			t.Errorf("%s: dispatch, fast path and metrics disagree", row.typ)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("clientMessages has %v, package protocol defines %v", got, want)
	}
	if messageKind("nonsense") != otherMessage || messageTypeLabel(otherMessage) != "other" {
		t.Fatal("an unknown type is not counted as other")
	}
}
