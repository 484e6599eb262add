// Package cputime reads how much CPU time this process has used.
package cputime

import "time"

// Process returns the CPU time, user and system, that every thread of this
// process has used so far. ok is false on a system where it cannot be read.
func Process() (used time.Duration, ok bool) { return process() }
