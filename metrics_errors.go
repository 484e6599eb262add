package livesync

import "github.com/openlivesync/livesync/protocol"

// errorCodes are the codes of the error frames sent to clients, as the
// "code" label of livesync_errors_sent_total: the protocol's fixed table,
// so a client cannot grow the label set. A code missing here counts as
// "other" (see errorCodeIndex).
var errorCodes = [...]string{
	protocol.CodeInvalidJSON, protocol.CodeInvalidMessage, protocol.CodeInvalidPayload,
	protocol.CodeNotInRoom, protocol.CodeForbidden, protocol.CodeRateLimited,
	protocol.CodeMessageTooLarge, protocol.CodeChatUnavailable, protocol.CodeServerError,
	protocol.CodeChatRejected,
	"other",
}

// errorCodeIndex is code's slot in errorCodes. A linear scan of ten
// short strings: it runs once per error frame, never per normal message.
func errorCodeIndex(code string) int {
	for i, c := range errorCodes[:len(errorCodes)-1] {
		if c == code {
			return i
		}
	}
	return len(errorCodes) - 1
}

// The chat store operations livesync_store_errors_total counts, as its
// "op" label (storeOps).
const (
	storeAppend  = iota // storing a batch of chat messages
	storeHistory        // reading history: a room's first join, get_chat_history, the API's pages
	storeDelete         // the API's message deletion
	numStoreOps
)

// storeOps are the "op" labels of storeAppend and the rest.
var storeOps = [numStoreOps]string{"append", "history", "delete"}

// errorSent counts an error frame sent to a client with code. Every error
// frame goes through conn.sendError, which calls it.
func (m *metrics) errorSent(code string) { m.errorsSent[errorCodeIndex(code)].Add(1) }

// storeFailed counts a chat store call of kind op that returned an error.
func (m *metrics) storeFailed(op int) { m.storeErrs[op].Add(1) }

// rateLimitDisconnect counts a connection closed for its message rate:
// MaxViolations refusals in a row on the rooms' endpoint, a document
// budget overrun on /yjs.
func (m *metrics) rateLimitDisconnect() { m.rateCloses.Add(1) }
