package livesynctest

import (
	"testing"

	"github.com/openlivesync/livesync/internal/testsvc"
)

// WaitFor polls cond until it holds, failing t when Timeout passes first.
// A wait with another bound is testsvc.WaitFor, which this calls.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsvc.WaitFor(t, what, Timeout, cond)
}
