package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// fakeDB is a CommitFunc that records each transaction. When gate is
// set, a commit signals entered and then waits until gate is closed, so a
// test can pile up requests behind a commit in progress.
type fakeDB struct {
	mu      sync.Mutex
	seq     int
	batches [][]string
	fail    func(msgs []chat.Message) error
	entered chan struct{}
	gate    chan struct{}
}

func (f *fakeDB) commit(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	if f.gate != nil {
		f.entered <- struct{}{}
		<-f.gate
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(msgs); err != nil {
			return nil, err
		}
	}
	var texts []string
	out := make([]protocol.StoredChatMessage, len(msgs))
	for i, m := range msgs {
		f.seq++
		out[i] = protocol.StoredChatMessage{ID: strconv.Itoa(f.seq), Message: m.Message}
		texts = append(texts, m.Message)
	}
	f.batches = append(f.batches, texts)
	return out, nil
}

func msg(text string) []chat.Message { return []chat.Message{{Message: text}} }

func gated() *fakeDB {
	return &fakeDB{entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

// waitQueued waits until c's queue holds n requests.
func waitQueued(t *testing.T, c *Committer, n int) {
	t.Helper()
	testsvc.WaitFor(t, fmt.Sprintf("%d queued requests", n), 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue) == n
	})
}

func TestGathersWhatQueuesDuringACommit(t *testing.T) {
	db := gated()
	c := New(db.commit, Options{MaxBatch: 5})
	defer c.Close()

	results := make(chan error, 10)
	go func() { _, err := c.Append(context.Background(), msg("first")); results <- err }()
	<-db.entered // "first" is committing alone: no delay when idle
	for i := range 7 {
		go func() { _, err := c.Append(context.Background(), msg(fmt.Sprint(i))); results <- err }()
	}
	waitQueued(t, c, 7)
	close(db.gate)
	for range 8 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if len(db.batches) != 3 || len(db.batches[0]) != 1 || len(db.batches[1]) != 5 || len(db.batches[2]) != 2 {
		t.Fatalf("batches = %v; want [first], then 5 (MaxBatch), then 2", db.batches)
	}
}

func TestBatchOrderAndSlices(t *testing.T) {
	db := &fakeDB{}
	c := New(db.commit, Options{})
	defer c.Close()
	out, err := c.Append(context.Background(), []chat.Message{{Message: "a"}, {Message: "b"}, {Message: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].ID+out[1].ID+out[2].ID != "123" || out[2].Message != "c" {
		t.Fatalf("out = %+v", out)
	}
	if out, err := c.Append(context.Background(), nil); err != nil || len(out) != 0 || out == nil {
		t.Fatalf("empty append = %v, %v", out, err)
	}
}

func TestOversizedRequestGoesAlone(t *testing.T) {
	db := &fakeDB{}
	c := New(db.commit, Options{MaxBatch: 2, MaxBytes: 10})
	defer c.Close()
	big := []chat.Message{{Message: "1"}, {Message: "2"}, {Message: "3"}}
	if _, err := c.Append(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(context.Background(), msg("this text is longer than MaxBytes")); err != nil {
		t.Fatal(err)
	}
	if len(db.batches) != 2 || len(db.batches[0]) != 3 {
		t.Fatalf("batches = %v; an oversized request must still commit, whole", db.batches)
	}
}

func TestRolledBackGroupIsRetriedPerCaller(t *testing.T) {
	db := gated()
	db.fail = func(msgs []chat.Message) error {
		for _, m := range msgs {
			if m.Message == "bad" {
				return RolledBack(errors.New("bad data"))
			}
		}
		return nil
	}
	c := New(db.commit, Options{})
	defer c.Close()
	type result struct {
		text string
		err  error
	}
	results := make(chan result, 4)
	send := func(text string) {
		_, err := c.Append(context.Background(), msg(text))
		results <- result{text, err}
	}
	go send("blocker")
	<-db.entered
	for _, text := range []string{"good1", "bad", "good2"} {
		go send(text)
	}
	waitQueued(t, c, 3)
	close(db.gate)
	for range 4 {
		r := <-results
		if (r.text == "bad") != (r.err != nil) {
			t.Errorf("%s: err = %v", r.text, r.err)
		}
	}
}

func TestUnknownOutcomeIsNotRetried(t *testing.T) {
	calls := 0
	c := New(func(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
		calls++
		return nil, errors.New("connection lost during COMMIT")
	}, Options{})
	defer c.Close()
	if _, err := c.Append(context.Background(), msg("x")); err == nil {
		t.Fatal("Append succeeded")
	}
	if calls != 1 {
		t.Fatalf("commit called %d times; an unknown outcome must not be retried", calls)
	}
}

func TestAbandonedRequestIsNotStored(t *testing.T) {
	db := gated()
	c := New(db.commit, Options{})
	defer c.Close()
	done := make(chan error)
	go func() { _, err := c.Append(context.Background(), msg("blocker")); done <- err }()
	<-db.entered
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan error)
	go func() { _, err := c.Append(ctx, msg("abandoned")); abandoned <- err }()
	waitQueued(t, c, 1)
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned append: %v", err)
	}
	close(db.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
	if fmt.Sprint(db.batches) != "[[blocker]]" {
		t.Fatalf("batches = %v; the abandoned message must not be stored", db.batches)
	}
}

func TestCloseDrainsQueueThenRefuses(t *testing.T) {
	db := gated()
	c := New(db.commit, Options{})
	results := make(chan error, 4)
	go func() { _, err := c.Append(context.Background(), msg("a")); results <- err }()
	<-db.entered
	for _, text := range []string{"b", "c"} {
		go func() { _, err := c.Append(context.Background(), msg(text)); results <- err }()
	}
	waitQueued(t, c, 2)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	close(db.gate)
	<-closed
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("append queued before Close: %v", err)
		}
	}
	if _, err := c.Append(context.Background(), msg("late")); !errors.Is(err, chat.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	c.Close()
}

// slack is how late past its deadline an Append may return before the
// tests call it hung: far more than scheduling noise on a loaded machine,
// far less than the 30 s Options.Timeout the old code waited for.
const slack = 5 * time.Second

func TestCallerGetsItsErrorByItsDeadline(t *testing.T) {
	commitEnded := make(chan error, 1)
	c := New(func(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
		<-ctx.Done() // a hung database, on a driver that watches ctx
		commitEnded <- ctx.Err()
		return nil, RolledBack(ctx.Err())
	}, Options{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err := c.Append(ctx, msg("x"))
	if late := time.Since(deadline); late > slack {
		t.Errorf("Append returned %v after its deadline", late)
	}
	// The caller's own timer or the commit's answer to the same
	// deadline may come first; either way the error says why.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append: %v; want context.DeadlineExceeded", err)
	}
	select {
	case err := <-commitEnded:
		if err == nil {
			t.Fatal("the commit's context did not end")
		}
	case <-time.After(slack):
		t.Fatal("the commit's context did not end with the caller's deadline")
	}
}

func TestCommitOutlivingItsCallerIsUndone(t *testing.T) {
	// A commit that ignores its context (a driver blocked in a COMMIT it
	// cannot cancel) and succeeds after the caller gave up: the caller
	// heard "not stored", so the stored message goes to Undo.
	release := make(chan struct{})
	undone := make(chan []protocol.StoredChatMessage, 1)
	db := &fakeDB{}
	c := New(func(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
		<-release
		return db.commit(ctx, msgs)
	}, Options{Undo: func(stored []protocol.StoredChatMessage) { undone <- stored }})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if _, err := c.Append(ctx, msg("late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append: %v; want its deadline's error", err)
	}
	if late := time.Since(deadline); late > slack {
		t.Errorf("Append returned %v after its deadline", late)
	}
	close(release)
	select {
	case got := <-undone:
		if len(got) != 1 || got[0].Message != "late" || got[0].ID == "" {
			t.Fatalf("Undo got %+v; want the stored message", got)
		}
	case <-time.After(slack):
		t.Fatal("Undo was not called for a message stored after its caller gave up")
	}
	// The committer goes on working.
	if _, err := c.Append(context.Background(), msg("next")); err != nil {
		t.Fatal(err)
	}
}

func TestOneCallerGivingUpLeavesTheOthersStored(t *testing.T) {
	// Three callers share a transaction; one gives up while it runs. The
	// transaction is cancelled (rolled back), and the two others are
	// stored by a retry each, the quitter's message nowhere.
	db := gated()
	var inner fakeDB
	c := New(func(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
		if len(msgs) == 1 && msgs[0].Message == "blocker" {
			return db.commit(ctx, msgs)
		}
		if len(msgs) > 1 {
			<-ctx.Done() // the batch hangs until someone gives up
			return nil, RolledBack(ctx.Err())
		}
		return inner.commit(ctx, msgs)
	}, Options{Undo: func([]protocol.StoredChatMessage) { t.Error("Undo called; nothing was stored late") }})
	defer c.Close()
	type result struct {
		text string
		err  error
	}
	results := make(chan result, 4)
	go func() { _, err := c.Append(context.Background(), msg("blocker")); results <- result{"blocker", err} }()
	<-db.entered
	quit, cancel := context.WithCancel(context.Background())
	for _, text := range []string{"a", "quitter", "b"} {
		ctx := context.Background()
		if text == "quitter" {
			ctx = quit
		}
		go func() { _, err := c.Append(ctx, msg(text)); results <- result{text, err} }()
	}
	waitQueued(t, c, 3)
	close(db.gate)
	testsvc.WaitFor(t, "the batch of three to be taken", 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue) == 0
	})
	cancel()
	for range 4 {
		r := <-results
		if (r.text == "quitter") != (r.err != nil) {
			t.Errorf("%s: err = %v", r.text, r.err)
		}
	}
	c.Close()
	inner.mu.Lock()
	defer inner.mu.Unlock()
	slices.SortFunc(inner.batches, slices.Compare)
	if got := fmt.Sprint(inner.batches); got != "[[a] [b]]" {
		t.Fatalf("stored alone: %s; want [a] and [b]", got)
	}
}
