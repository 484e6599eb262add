//go:build !(linux || darwin)

package main

import "errors"

// raiseNoFile is for Linux and macOS only (elsewhere Rlimit differs).
func raiseNoFile(want uint64) (uint64, error) {
	return 0, errors.New("raising RLIMIT_NOFILE is supported on Linux and macOS only")
}
