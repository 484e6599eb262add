package livesync_test

import (
	"context"
	"flag"
	"fmt"

	"github.com/openlivesync/livesync"
)

// A program of your own can take every limit as a flag, as the binary
// does; a flag left alone leaves the library's default in force.
func ExampleLimits_RegisterFlags() {
	var limits livesync.Limits
	fs := flag.NewFlagSet("game", flag.ContinueOnError)
	limits.RegisterFlags(fs)
	if err := fs.Parse([]string{"-event-rate", "300", "-connections-per-ip", "-1"}); err != nil {
		fmt.Println(err)
		return
	}
	srv, err := livesync.New(&livesync.Options{Limits: limits})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown(context.Background())
	l := srv.Limits()
	fmt.Println(l.EventRate, l.EventBurst, l.ConnectionsPerIP)
	// Output: 300 200 -1
}
