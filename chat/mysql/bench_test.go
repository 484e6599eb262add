package mysql

import (
	"testing"

	"github.com/openlivesync/livesync/chat/chattest"
)

func BenchmarkAppend(b *testing.B) {
	s, _ := newTestStore(b, nil)
	chattest.BenchAppend(b, s)
}

func BenchmarkAppendParallel(b *testing.B) {
	s, _ := newTestStore(b, nil)
	chattest.BenchAppendParallel(b, s)
}

func BenchmarkHistory100(b *testing.B) {
	s, _ := newTestStore(b, nil)
	chattest.BenchHistory100(b, s)
}

func BenchmarkHistoryBefore100(b *testing.B) {
	s, _ := newTestStore(b, nil)
	chattest.BenchHistoryBefore100(b, s)
}
