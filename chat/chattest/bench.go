package chattest

import (
	"context"
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/chat"
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

// BenchHistory100 measures reading a page of 100 from a room of 1,000,
// what every join costs.
func BenchHistory100(b *testing.B, s chat.Store) {
	ctx := context.Background()
	msgs := make([]chat.Message, 100)
	for range 10 {
		for i := range msgs {
			msgs[i] = benchMessage("bench-history", i)
		}
		if ba, ok := s.(chat.BatchAppender); ok {
			if _, err := ba.AppendBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for _, m := range msgs {
			if _, err := s.Append(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	}
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
