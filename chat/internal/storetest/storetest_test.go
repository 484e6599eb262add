package storetest

import (
	"errors"
	"fmt"
	"testing"
)

// masked hides its cause's text, as a redacting wrapper does, but still
// unwraps to it.
type masked struct{ cause error }

func (e masked) Error() string { return "masked" }
func (e masked) Unwrap() error { return e.cause }

func TestFindSecret(t *testing.T) {
	leak := errors.New("dial postgres://u:hunter2@h")
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("clean"), ""},
		{fmt.Errorf("store: %w", leak), "store: dial postgres://u:hunter2@h"},
		{masked{leak}, leak.Error()},
		{fmt.Errorf("store: %w", errors.Join(errors.New("a"), masked{leak})), leak.Error()},
		{masked{errors.Join(errors.New("a"), leak)}, "a\n" + leak.Error()},
	}
	for i, c := range cases {
		if got := findSecret(c.err, "hunter2"); got != c.want {
			t.Errorf("case %d: findSecret = %q, want %q", i, got, c.want)
		}
	}
}
