package webhook

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// newClient returns the client the webhooks and the chat hook post with:
// connections to the receiver are kept and reused (up to conns idle), and
// no redirect is followed. A redirect answer counts as a failure: a signed
// POST is meant for the URL configured, not for wherever a receiver, or
// someone who took over its address, points.
func newClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(conns, 2)
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// maxResponseBytes bounds the part of a receiver's answer that is read.
const maxResponseBytes = 64 << 10

// readBody reads at most maxResponseBytes of resp's body and reports
// whether there was more. What is left unread is discarded, up to the
// same bound, so that the connection can be reused. Its error is the
// read's: a receiver that stalls or breaks off mid-body, or the request's
// context ending meanwhile; what was read by then is returned with it.
func readBody(resp *http.Response) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	over := len(b) > maxResponseBytes
	if over {
		b = b[:maxResponseBytes]
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	}
	return b, over, err
}

// snippet is the start of a receiver's answer, quoted, for a log line:
// never the whole of it, which may be large or hold what should not be
// logged.
func snippet(b []byte) string {
	const n = 120
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "…"
	}
	return strconv.Quote(string(b))
}
