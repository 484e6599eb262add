package livesync

import (
	"fmt"

	"github.com/openlivesync/livesync/protocol"
)

// clientError is a refusal the client is told about with an error message;
// the connection stays open.
type clientError struct {
	code, message string
}

func (e *clientError) Error() string { return e.code + ": " + e.message }

func errPayload(format string, args ...any) *clientError {
	return &clientError{protocol.CodeInvalidPayload, fmt.Sprintf(format, args...)}
}
