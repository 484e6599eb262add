package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestScheduleOrderAndCount(t *testing.T) {
	const n = 5
	interval := 20 * time.Millisecond
	start := time.Now()
	stop := start.Add(5 * interval)
	var slots []int
	var times []time.Time
	skipped := schedule(context.Background(), n, interval, start, stop, func(k int, now time.Time) {
		slots = append(slots, k)
		times = append(times, now)
	})
	if got := len(slots) + int(skipped); got != 5*n {
		t.Fatalf("sent %d + skipped %d, want %d slots", len(slots), skipped, 5*n)
	}
	// Without skips, slots come in cyclic order 0..n-1, 0..n-1, ...
	if skipped == 0 {
		for i, k := range slots {
			if k != i%n {
				t.Fatalf("send %d went to slot %d, want %d", i, k, i%n)
			}
		}
	}
	// No send happens before its due time.
	for i, at := range times {
		if skipped != 0 {
			break
		}
		cycle, k := i/n, i%n
		due := start.Add(time.Duration(cycle)*interval + time.Duration(k)*interval/n)
		if at.Before(due) {
			t.Fatalf("send %d at %v, before its due time %v", i, at.Sub(start), due.Sub(start))
		}
	}
}

func TestScheduleStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	sends := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A 1 h window ends only through the context.
		schedule(ctx, 2, 10*time.Millisecond, start, start.Add(time.Hour), func(int, time.Time) {
			sends++
			if sends == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("schedule did not stop after cancel")
	}
	if sends < 3 {
		t.Fatalf("sends = %d", sends)
	}
}

func TestScheduleEdgeCases(t *testing.T) {
	now := time.Now()
	called := false
	send := func(int, time.Time) { called = true }
	schedule(context.Background(), 0, time.Millisecond, now, now.Add(time.Second), send)
	schedule(context.Background(), 3, 0, now, now.Add(time.Second), send)
	schedule(context.Background(), 3, time.Millisecond, now, now, send) // empty window
	if called {
		t.Fatal("send called for an empty schedule")
	}
	// A start far in the past: every slot is more than an interval late
	// until the schedule reaches the present, so those are skipped.
	skipped := schedule(context.Background(), 2, 10*time.Millisecond, now.Add(-time.Second), now.Add(30*time.Millisecond), func(int, time.Time) {})
	if skipped < 150 {
		t.Fatalf("skipped = %d, want the ~200 slots of the past second", skipped)
	}
}

func TestFramesAreValidJSON(t *testing.T) {
	for _, size := range []int{0, 50, 100, 1000} {
		st := appendStamp(nil, 1732812345678901234, 7, 99, size)
		if size >= 80 && len(st) != size {
			t.Errorf("stamp size %d, want %d", len(st), size)
		}
		var m map[string]any
		if err := json.Unmarshal(st, &m); err != nil {
			t.Fatalf("stamp %q: %v", st, err)
		}
		if s, ok := parseStamp(st); !ok || s != (stamp{1732812345678901234, 7, 99}) {
			t.Fatalf("parseStamp = %+v, %v", s, ok)
		}
		for _, frame := range [][]byte{
			appendEventFrame(nil, 1, 2, 3, size),
			appendChatFrame(nil, 1, 2, 3, size),
		} {
			var env struct {
				Type    string          `json:"type"`
				Payload json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal(frame, &env); err != nil || env.Type == "" {
				t.Fatalf("frame %q: %v", frame, err)
			}
		}
	}
}

func TestQuickStampAgreesWithWalker(t *testing.T) {
	frames := []string{
		string(appendEventFrame([]byte(`{"type":"broadcast_event","payload":{"roomId":"r","connectionId":"c","event":"olsb","payload":`), 1732812345678901234, 17, 42, 100)) + "}}",
		// Keys re-ordered (a server that re-encodes through a map) and spaced out.
		`{"type":"broadcast_event","payload":{"roomId":"r","payload":{"olsbQ": 42, "olsbS":17 ,"olsbT":1732812345678901234,"pad":"xx"},"connectionId":"c"}}`,
	}
	for _, f := range frames {
		got, ok := quickStamp([]byte(f))
		if !ok || got != (stamp{1732812345678901234, 17, 42}) {
			t.Errorf("quickStamp(%s) = %+v, %v", f, got, ok)
		}
	}
	for _, f := range []string{
		`{"type":"broadcast_event","payload":{"payload":{"olsbT":1,"olsbS":2}}}`,             // no sequence
		`{"type":"broadcast_event","payload":{"payload":{"olsbT":1e3,"olsbS":2,"olsbQ":3}}}`, // float form
		`{"type":"broadcast_event","payload":{"payload":{"olsbT":"1","olsbS":2,"olsbQ":3}}}`, // string
		`{"type":"broadcast_event","payload":{"payload":{"olsbT":`,                           // truncated
	} {
		if s, ok := quickStamp([]byte(f)); ok {
			t.Errorf("quickStamp(%s) = %+v, want fallback", f, s)
		}
	}
}

func TestDispatchFastAndSlowPaths(t *testing.T) {
	var got []stamp
	g := &gen{errCodes: map[string]int64{}}
	g.onEvent = func(_ *client, s stamp, _ time.Time) { got = append(got, s) }
	g.onFrame = func(_ *client, typ, payload []byte, _ time.Time) {
		inner, _ := member(payload, "payload")
		if s, ok := parseStamp(inner); ok && string(typ) == "broadcast_event" {
			got = append(got, stamp{s.t, s.sender, -s.seq}) // negative: took the slow path
		}
	}
	c := &client{g: g, joined: make(chan struct{})}
	g.dispatch(c, []byte(`{"type":"broadcast_event","payload":{"payload":{"olsbT":1,"olsbS":2,"olsbQ":3}}}`), time.Now())
	g.dispatch(c, []byte(`{"payload":{"payload":{"olsbT":1,"olsbS":2,"olsbQ":3}},"type":"broadcast_event"}`), time.Now())
	g.dispatch(c, []byte(`{"type":"room_joined","payload":{"roomId":"r","connectionId":"me","presence":{},"chatHistory":[]}}`), time.Now())
	g.dispatch(c, []byte(`{"type":"error","payload":{"code":"RATE_LIMITED","message":"x"}}`), time.Now())
	g.dispatch(c, []byte(`not json`), time.Now())
	if len(got) != 2 || got[0] != (stamp{1, 2, 3}) || got[1] != (stamp{1, 2, -3}) {
		t.Fatalf("stamps = %+v", got)
	}
	select {
	case <-c.joined:
	default:
		t.Fatal("room_joined did not mark the client joined")
	}
	if string(c.connID) != "me" || g.errCodes["RATE_LIMITED"] != 1 || g.errCodes["UNPARSABLE_FRAME"] != 1 {
		t.Fatalf("connID %q errors %v", c.connID, g.errCodes)
	}
}

func TestSourceIP(t *testing.T) {
	g := &gen{cfg: &Config{PerIP: 900}, targetV4: true}
	for _, tc := range []struct {
		i    int
		want string
	}{{0, "127.0.0.1"}, {899, "127.0.0.1"}, {900, "127.0.0.2"}, {9999, "127.0.0.12"}, {900 * 300, "127.0.1.45"}} {
		if got := g.sourceIP(tc.i).String(); got != tc.want {
			t.Errorf("sourceIP(%d) = %s, want %s", tc.i, got, tc.want)
		}
	}
	if ip := (&gen{cfg: &Config{PerIP: 0}, targetV4: true}).sourceIP(5); ip != nil {
		t.Errorf("-per-ip 0 chose %v", ip)
	}
	if ip := (&gen{cfg: &Config{PerIP: 10}, targetV4: false}).sourceIP(5); ip != nil {
		t.Errorf("IPv6 target chose %v", ip)
	}
}
