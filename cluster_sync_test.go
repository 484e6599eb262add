package livesync

// Tests of a room's synchronisation with the cluster, driven step by step
// by a fake broker: they exercise the server's side, whatever the backend,
// at moments a real Redis cannot be made to stop at.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/broker"
)

// fakeBroker is a Broker whose registry the test sets, to drive a room's
// synchronisation step by step.
type fakeBroker struct {
	mu         sync.Mutex
	sink       broker.Sink
	members    []broker.Member
	fail       error         // RoomState's answer when not nil
	gate       chan struct{} // when not nil, RoomState waits for it to close
	entered    chan struct{} // RoomState signals each call here when not nil
	roomStates int
	unhealthy  error // Healthy's answer
}

func (f *fakeBroker) Start(_ string, sink broker.Sink) error {
	f.sink = sink
	return nil
}
func (f *fakeBroker) Subscribe(context.Context, string) error { return nil }
func (f *fakeBroker) Unsubscribe(string)                      {}
func (f *fakeBroker) RoomState(context.Context, string) (broker.RoomState, error) {
	f.mu.Lock()
	f.roomStates++
	gate, entered, fail, members := f.gate, f.entered, f.fail, slices.Clone(f.members)
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	return broker.RoomState{Members: members}, fail
}
func (f *fakeBroker) SetMember(string, string, []byte) {}
func (f *fakeBroker) RemoveMember(string, string)      {}
func (f *fakeBroker) PublishEvent(string, []byte)      {}
func (f *fakeBroker) LockChat(context.Context, string) (broker.ChatLock, error) {
	return nil, broker.ErrUnavailable
}
func (f *fakeBroker) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unhealthy
}
func (f *fakeBroker) Close() error { return nil }

func (f *fakeBroker) set(fn func(*fakeBroker)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// remoteMembers lists the room's members connected to other nodes, with
// their entries.
func (r *room) remoteMembers() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for id, m := range r.members {
		if m.conn == nil {
			out[id] = string(m.json)
		}
	}
	return out
}

// TestClusterSyncDropsStalePending: a change received before a failed
// synchronisation is not replayed over the registry read by the next one,
// where it could resurrect a member whose departure was lost meanwhile.
func TestClusterSyncDropsStalePending(t *testing.T) {
	f := &fakeBroker{fail: errors.New("redis is away")}
	s, _ := startServer(t, &Options{Broker: f})
	r := s.acquireRoom("r")
	r.ensureSynced() // fails: the room waits for a retry
	f.sink.MemberSet("r", "gone", []byte(`{"connectionId":"gone"}`))
	// Its departure is lost (an outage); the registry no longer has it.
	f.set(func(f *fakeBroker) {
		f.fail = nil
		f.members = []broker.Member{{ConnID: "stays", Entry: []byte(`{"connectionId":"stays"}`)}}
	})
	f.sink.Resync()
	if got := r.remoteMembers(); len(got) != 1 || got["stays"] == "" {
		t.Fatalf("remote members after the resync: %v, want only the registry's", got)
	}
}

// TestClusterPendingKeepsLatestPerMember: while a room synchronises, a
// storm of remote updates keeps one change per member, not one per
// update, and the latest wins.
func TestClusterPendingKeepsLatestPerMember(t *testing.T) {
	f := &fakeBroker{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, _ := startServer(t, &Options{Broker: f})
	r := s.acquireRoom("r")
	done := make(chan struct{})
	go func() { r.ensureSynced(); close(done) }()
	<-f.entered // subscribed, reading the registry
	// More than pending ever holds, and a multiple of 3.
	const updates = (maxPendingRemote/3 + 1) * 3
	for i := range updates {
		f.sink.MemberSet("r", fmt.Sprint("m", i%3), []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	f.sink.MemberRemoved("r", "m2")
	r.mu.Lock()
	pending, lost := len(r.pending), r.pendingLost
	r.mu.Unlock()
	if pending != 3 || lost {
		t.Errorf("pending holds %d changes (lost %v) for 3 members", pending, lost)
	}
	close(f.gate)
	<-done
	want := map[string]string{"m0": fmt.Sprintf(`{"n":%d}`, updates-3), "m1": fmt.Sprintf(`{"n":%d}`, updates-2)}
	if got := r.remoteMembers(); !maps.Equal(got, want) {
		t.Fatalf("remote members %v, want %v", got, want)
	}
}

// TestClusterJoinStormSyncsOnce: the joiners of a new room that all find
// it unsynchronised read the registry once between them, not once each.
func TestClusterJoinStormSyncsOnce(t *testing.T) {
	f := &fakeBroker{gate: make(chan struct{}), entered: make(chan struct{}, 64)}
	s, _ := startServer(t, &Options{Broker: f})
	r := s.acquireRoom("r")
	const joiners = 20
	var started, done sync.WaitGroup
	started.Add(joiners)
	for range joiners {
		done.Go(func() {
			started.Done()
			r.ensureSynced()
		})
	}
	started.Wait()
	<-f.entered
	close(f.gate)
	done.Wait()
	if f.roomStates != 1 {
		t.Fatalf("%d joiners read the registry %d times, want once", joiners, f.roomStates)
	}
}
