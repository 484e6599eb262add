package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// watchStopSignals watches SIGINT and SIGTERM. serving ends at the first:
// the server stops serving and begins its shutdown (-shutdown-delay, then
// the drain). hurry ends at a second, for an operator who will not wait:
// the shutdown is cut short. After the second the signals get their
// default action back, so that a third kills the process even if the
// shortened shutdown hangs. release stops the watch.
func watchStopSignals() (serving, hurry context.Context, release func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	serving, endServing := context.WithCancel(context.Background())
	hurry, endHurry := context.WithCancel(context.Background())
	quit := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer signal.Stop(sigs)
		for _, end := range []context.CancelFunc{endServing, endHurry} {
			select {
			case <-sigs:
				end()
			case <-quit:
				return
			}
		}
	}()
	return serving, hurry, func() {
		close(quit)
		<-stopped
		endServing()
		endHurry()
	}
}
