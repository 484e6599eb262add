package main

import (
	"bytes"
	"context"
	"strconv"
	"time"
)

// schedule drives n senders from one goroutine: slot k sends at
// start + k·interval/n + m·interval for m = 0, 1, ..., as long as that time is
// before stop. Spreading the phases over the interval keeps sends from
// arriving in synchronized bursts, and one goroutine with one timer costs far
// less than a timer per connection. Slots already due are sent in a batch,
// so timer granularity (about 1 ms) does not lower the rate.
//
// A slot more than a whole interval late is skipped rather than sent, so a
// generator that cannot keep up shows it as a lower sent fraction instead of
// as bursts that catch up. It returns the number of skipped sends.
func schedule(ctx context.Context, n int, interval time.Duration, start, stop time.Time, send func(k int, now time.Time)) (skipped int64) {
	if n <= 0 || interval <= 0 {
		return 0
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var cycle int64
	k := 0
	for {
		due := start.Add(time.Duration(cycle)*interval + time.Duration(int64(interval)*int64(k)/int64(n)))
		if !due.Before(stop) {
			return skipped
		}
		now := time.Now()
		if wait := due.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return skipped
			case <-timer.C:
			}
			continue
		}
		if now.Sub(due) > interval {
			skipped++
		} else {
			send(k, now)
		}
		k++
		if k == n {
			k = 0
			cycle++
			if ctx.Err() != nil {
				return skipped
			}
		}
	}
}

// appendStamp appends the JSON object a measured frame carries: the send
// time (Unix nanoseconds), the sender's connection index and its sequence
// number, padded with a string to about size bytes.
func appendStamp(b []byte, t int64, sender int, seq int64, size int) []byte {
	start := len(b)
	b = append(b, `{"olsbT":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"olsbS":`...)
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, `,"olsbQ":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"pad":"`...)
	const tail = len(`"}`)
	for len(b)-start+tail < size {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// stamp is what appendStamp wrote.
type stamp struct {
	t, sender, seq int64
}

// parseStamp reads a stamp object; ok is false unless all three fields are
// present.
func parseStamp(obj []byte) (s stamp, ok bool) {
	var seen int
	eachMember(obj, func(k, v []byte) bool {
		var dst *int64
		switch string(k) {
		case "olsbT":
			dst = &s.t
		case "olsbS":
			dst = &s.sender
		case "olsbQ":
			dst = &s.seq
		default:
			return true
		}
		if n, ok := parseInt(v); ok {
			*dst = n
			seen++
		}
		return true
	})
	return s, seen == 3
}

// quickStamp finds a stamp anywhere in frame by its field markers, without
// walking the JSON: on a 250k frames/s fan-out the walk would cost the
// generator more than the relay costs the server. It is used only on frames
// whose type is already known and whose other strings (room ids, connection
// ids, the "olsb" event name) cannot hold a marker; anything unexpected
// returns ok=false and the caller falls back to the full walk.
func quickStamp(frame []byte) (s stamp, ok bool) {
	var okT, okS, okQ bool
	s.t, okT = markedInt(frame, 'T')
	s.sender, okS = markedInt(frame, 'S')
	s.seq, okQ = markedInt(frame, 'Q')
	return s, okT && okS && okQ
}

// markedInt returns the integer after the marker "olsbX": for X = letter.
// It looks for the upper-case letter, which is rare in these frames, with
// the vectorised IndexByte and checks the marker around it: a plain
// bytes.Index would stop at every '"' of the JSON.
func markedInt(frame []byte, letter byte) (int64, bool) {
	const pre, post = `"olsb`, `":`
	for from := len(pre); from < len(frame); {
		i := bytes.IndexByte(frame[from:], letter)
		if i < 0 {
			return 0, false
		}
		i += from
		from = i + 1
		if string(frame[i-len(pre):i]) != pre || i+1+len(post) > len(frame) || string(frame[i+1:i+1+len(post)]) != post {
			continue
		}
		j := skipWS(frame, i+1+len(post))
		k := j
		if k < len(frame) && frame[k] == '-' {
			k++
		}
		for k < len(frame) && frame[k] >= '0' && frame[k] <= '9' {
			k++
		}
		if k == len(frame) || frame[k] == '.' || frame[k] == 'e' || frame[k] == 'E' {
			return 0, false // truncated, or re-encoded as a float: let the walker decide
		}
		return parseInt(frame[j:k])
	}
	return 0, false
}

// appendEventFrame builds a broadcast_event frame carrying a stamp.
func appendEventFrame(b []byte, t int64, sender int, seq int64, size int) []byte {
	b = append(b, `{"type":"broadcast_event","payload":{"event":"olsb","payload":`...)
	b = appendStamp(b, t, sender, seq, size)
	return append(b, `}}`...)
}

// appendChatFrame builds a send_chat frame whose metadata carries a stamp.
func appendChatFrame(b []byte, t int64, sender int, seq int64, size int) []byte {
	b = append(b, `{"type":"send_chat","payload":{"message":"olsb chat `...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","metadata":`...)
	b = appendStamp(b, t, sender, seq, size)
	return append(b, `}}`...)
}
