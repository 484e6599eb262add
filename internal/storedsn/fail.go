package storedsn

import (
	"errors"
	"strconv"

	"github.com/openlivesync/livesync/internal/redact"
)

// redactedError carries a message with the DSN's password masked, and
// still unwraps to the cause so callers can test for e.g.
// context.DeadlineExceeded.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// fail builds Open's error: what went wrong with the store at dsn, with
// the password masked everywhere in the text, including inside cause's
// message.
func fail(dsn, problem string, cause error) error {
	msg := "chat store " + strconv.Quote(redact.DSN(dsn)) + ": " + problem
	if cause != nil {
		msg += ": " + cause.Error()
	}
	msg = redact.Scrub(dsn, msg)
	if cause == nil {
		cause = errors.New(problem)
	}
	return &redactedError{msg: msg, cause: cause}
}
