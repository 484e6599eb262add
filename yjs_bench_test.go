package livesync

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/yupdate"
)

// typing is n single-keystroke updates of one client typing into the
// root text "t", every fifth keystroke a backspace (the history of
// yupdate's keystroke benchmarks and its oracle's bench.mjs).
func typing(n int) [][]byte {
	ups := make([][]byte, 0, n)
	var clock uint64
	var last []uint64 // clocks of the characters still there
	for i := range n {
		if i%5 == 4 && len(last) > 0 {
			c := last[len(last)-1]
			last = last[:len(last)-1]
			ups = append(ups, (&yupdate.Update{DeleteSet: yupdate.DeleteSet{{Client: 1, Ranges: []yupdate.Range{{Clock: c, Len: 1}}}}}).Encode())
			continue
		}
		st := yupdate.Struct{Kind: yupdate.KindItem, ID: yupdate.ID{Client: 1, Clock: clock}, Length: 1,
			Content: yupdate.ContentString{Str: "a"}}
		if len(last) > 0 {
			st.HasOrigin, st.Origin = true, yupdate.ID{Client: 1, Clock: last[len(last)-1]}
		} else {
			st.Parent, st.ParentName = yupdate.ParentRoot, "t"
		}
		ups = append(ups, (&yupdate.Update{Structs: []yupdate.Struct{st}}).Encode())
		last = append(last, clock)
		clock++
	}
	return ups
}

// BenchmarkDocD2 is bench/run.sh's D2: a document of 100,000 stored
// single-keystroke updates (typing with deletions) in SQLite is compacted
// by the server's merge (MergeUpdates, then GC), and then opened by a new
// peer. It reports the compaction's time (compact-ms), the time from a
// peer's dial to the whole document in its hands (open-ms), and the
// compacted snapshot's size (snapshot-bytes).
func BenchmarkDocD2(b *testing.B) {
	ups := typing(100000)
	ctx := context.Background()
	var compact, open time.Duration
	var size int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st, err := sqlite.New(ctx, filepath.Join(b.TempDir(), "d2.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		docs, err := st.EnableDocs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < len(ups); j += 1000 {
			if err := docs.AppendUpdates(ctx, "d2", ups[j:min(j+1000, len(ups))]); err != nil {
				b.Fatal(err)
			}
		}
		s, wsURL := startServer(b, &Options{Store: st})
		b.StartTimer()

		start := time.Now()
		log, err := docs.CompactDoc(ctx, "d2", s.docs.mergeFunc("d2"))
		if err != nil || len(log.Updates) != 1 {
			b.Fatalf("compaction: %d updates left, %v", len(log.Updates), err)
		}
		compact += time.Since(start)
		size = int(log.Bytes)

		start = time.Now()
		peer := livesynctest.DialDoc(b, docBase(s, wsURL)+"d2")
		whole := peer.Handshake(nil)
		open += time.Since(start)
		if !livesynctest.HasClock(b, whole, 1, 80000) {
			b.Fatal("the new peer did not get the whole document")
		}
		b.StopTimer()
		peer.WS.Close()
	}
	b.ReportMetric(float64(compact.Milliseconds())/float64(b.N), "compact-ms")
	b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
	b.ReportMetric(float64(size), "snapshot-bytes")
}
