package chattest

import (
	"context"
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// benchMessage is a typical chat line: short text, a little metadata.
func benchMessage(room string, i int) chat.Message {
	return chat.Message{
		RoomID:       room,
		ConnectionID: "conn-bench",
		UserID:       "user-bench",
		Message:      fmt.Sprintf("benchmark message %d, about as long as a chat line", i),
		Metadata:     []byte(`{"client":"bench","v":1}`),
	}
}

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "msgs/s")
	}
}

// Bench runs this package's benchmarks as sub-benchmarks (Append,
// AppendParallel, History100, HistoryBefore100), each on a fresh store
// from newStore, so a store package needs a single Benchmark function:
//
//	func BenchmarkStore(b *testing.B) {
//		chattest.Bench(b, func(b *testing.B) chat.Store { return newTestStore(b) })
//	}
//
// newStore is called again whenever the testing package reruns a
// benchmark with a larger b.N, so it must return an empty store each
// time and arrange its cleanup with b.Cleanup.
func Bench(b *testing.B, newStore func(b *testing.B) chat.Store) {
	benches := []struct {
		name string
		run  func(*testing.B, chat.Store)
	}{
		{"Append", BenchAppend},
		{"AppendParallel", BenchAppendParallel},
		{"History100", BenchHistory100},
		{"HistoryBefore100", BenchHistoryBefore100},
	}
	for _, bench := range benches {
		b.Run(bench.name, func(b *testing.B) { bench.run(b, newStore(b)) })
	}
}

// BenchAppend measures one appender: each Append waits for its own
// commit, so this is the store's commit latency.
func BenchAppend(b *testing.B, s chat.Store) {
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if _, err := s.Append(ctx, benchMessage("bench-serial", i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportRate(b)
}

// AppendParallelism times GOMAXPROCS is how many goroutines
// BenchAppendParallel runs: at least 64 on a 2-core machine, like a busy
// server with many rooms.
const AppendParallelism = 32

// BenchAppendParallel measures many concurrent appenders, which is where
// group commit pays: throughput should far exceed BenchAppend's.
func BenchAppendParallel(b *testing.B, s chat.Store) {
	ctx := context.Background()
	b.SetParallelism(AppendParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Append(ctx, benchMessage(fmt.Sprintf("bench-room-%d", i%16), i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	reportRate(b)
}

// benchRoom fills room with n messages for the read benchmarks and
// returns them as stored.
func benchRoom(b *testing.B, s chat.Store, room string, n int) []protocol.StoredChatMessage {
	ctx := context.Background()
	var out []protocol.StoredChatMessage
	for start := 0; start < n; start += 100 {
		msgs := make([]chat.Message, min(100, n-start))
		for i := range msgs {
			msgs[i] = benchMessage(room, start+i)
		}
		if ba, ok := s.(chat.BatchAppender); ok {
			got, err := ba.AppendBatch(ctx, msgs)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, got...)
			continue
		}
		for _, m := range msgs {
			got, err := s.Append(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, got)
		}
	}
	return out
}

// BenchHistory100 measures reading a page of 100 from a room of 1,000,
// what every join costs.
func BenchHistory100(b *testing.B, s chat.Store) {
	ctx := context.Background()
	benchRoom(b, s, "bench-history", 1000)
	for b.Loop() {
		got, err := s.History(ctx, "bench-history", 100, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 100 {
			b.Fatalf("History returned %d messages", len(got))
		}
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)*100/s, "msgs/s")
	}
}

// BenchHistoryBefore100 measures a client scrolling back: the page of 100
// before a message half way up a room of 1,000. It skips stores that are
// not a chat.Pager.
func BenchHistoryBefore100(b *testing.B, s chat.Store) {
	p, ok := s.(chat.Pager)
	if !ok {
		b.Skip("store does not implement chat.Pager")
	}
	ctx := context.Background()
	cursor := benchRoom(b, s, "bench-before", 1000)[500].ID
	for b.Loop() {
		got, more, err := p.HistoryBefore(ctx, "bench-before", cursor, 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 100 || !more {
			b.Fatalf("HistoryBefore returned %d messages, hasMore %v", len(got), more)
		}
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)*100/s, "msgs/s")
	}
}
