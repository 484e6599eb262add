package webhook

import (
	"testing"
	"time"
)

// SetProbeInterval makes the Webhooks that New makes until t ends probe
// a failing receiver every d instead of every ProbeInterval, so that the
// tests of package webhook_test need not wait seconds for a probe.
func SetProbeInterval(t testing.TB, d time.Duration) {
	old := probeEvery
	probeEvery = d
	t.Cleanup(func() { probeEvery = old })
}
