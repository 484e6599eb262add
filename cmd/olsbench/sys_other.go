//go:build !unix

package main

import "errors"

// selfCPUSeconds is unknown off Unix; the CPU warning then never fires.
func selfCPUSeconds() float64 { return 0 }

// raiseNoFile has no equivalent off Unix.
func raiseNoFile(want uint64) (uint64, error) {
	return 0, errors.New("RLIMIT_NOFILE is Unix-only")
}
