package redis

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// Chat continuity in cluster mode.
//
// A chat batch's script can run where nobody hears its SPUBLISH: on the
// new owner of the room's slot (sent there by ASK or MOVED while the
// slot moves) before this node subscribed there. A single Redis never
// does that, so the chat a node misses then is recovered here. Every chat message carries its number and the number of the
// batch before it (see chatScript), and the script keeps the room's last
// chatBacklogLen messages for a minute. Per room channel, this node
// remembers the highest number it has delivered, published itself, or
// read with RoomState (which the server treats as delivered: it reads
// the history after). A batch whose previous number is above that, or a
// channel placed again after a move, means batches were missed: the
// room's live chat is held back while the backlog is read, the missed
// batches are delivered in order, and then what was held.

// chatBacklogLen is how many chat messages a room's backlog keeps: more
// than a room's batches during one slot move.
const chatBacklogLen = 64

func (k keys) lastChat(room string) string    { return k.roomKey("t", room) }
func (k keys) chatBacklog(room string) string { return k.roomKey("cb", room) }

// chatMsg is a chat message as published on a room channel.
type chatMsg struct {
	origin    string
	seq, prev uint64
	body      string
}

// parseChat reads a chat message's fields after its kind byte and origin:
// "<seq>[ <prev>]\n<body>".
func parseChat(origin, rest string) (chatMsg, bool) {
	nums, body, ok := strings.Cut(rest, "\n")
	if !ok {
		return chatMsg{}, false
	}
	seqText, prevText, _ := strings.Cut(nums, " ")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return chatMsg{}, false
	}
	var prev uint64
	if prevText != "" {
		if prev, err = strconv.ParseUint(prevText, 10, 64); err != nil {
			return chatMsg{}, false
		}
	}
	return chatMsg{origin: origin, seq: seq, prev: prev, body: body}, true
}

// chatFlow is where one room channel's chat stands on this node.
type chatFlow struct {
	mu sync.Mutex
	// seen is the highest number delivered or published here: a batch at
	// or below it is a repeat.
	seen  uint64
	known bool // seen means something
	// base is the highest number RoomState read: the server counts the
	// batches up to it as delivered (it reads the history after), but
	// one of them may still be on its way here, so it only tells which
	// missed batches the backlog must deliver.
	base uint64
	// baseRead is whether RoomState read the position at all: a room
	// without chat yet reads 0, and then every batch is one to deliver.
	baseRead   bool
	recovering bool // the backlog is being read: live chat waits in held
	held       []chatMsg
}

// mark is the number below which no batch is missing, and whether it is
// known. c.mu held.
func (c *chatFlow) mark() (uint64, bool) { return max(c.seen, c.base), c.known || c.baseRead }

// chatFlows are the chat flows by channel.
type chatFlows struct {
	mu sync.Mutex
	m  map[string]*chatFlow
}

// chatFlow returns room's chat flow while this node listens to the room,
// and nil otherwise.
func (b *Broker) chatFlow(room string) *chatFlow { return b.chats.lookup(b.k.channel(room)) }

// open starts a flow for a channel this node begins listening to. Only
// open makes flows, so that none outlives its subscription.
func (f *chatFlows) open(ch string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[string]*chatFlow)
	}
	if f.m[ch] == nil {
		f.m[ch] = &chatFlow{}
	}
}

// lookup returns a channel's flow, or nil when this node no longer
// listens to it.
func (f *chatFlows) lookup(ch string) *chatFlow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[ch]
}

// forget drops a channel's flow when this node no longer listens to it.
func (f *chatFlows) forget(ch string) {
	f.mu.Lock()
	delete(f.m, ch)
	f.mu.Unlock()
}

// publishedChat records that this node published room's chat batch seq,
// whose previous batch was prev (0: none). When this node has not
// received prev within chatGapWait, the batches up to it are recovered.
func (b *Broker) publishedChat(room string, seq, prev uint64) {
	b.inChatFlow(room, func(c *chatFlow) {
		// Counted as seen only once prev is: a batch before it may still
		// be on its way here, and would then count as a repeat.
		if mark, known := c.mark(); prev == 0 || (known && prev <= mark) {
			c.seen, c.known = max(c.seen, seq), true
			return
		}
		b.checkChatLater(room, prev, seq)
	})
}

// inChatFlow runs f with room's chat flow locked, when this node keeps
// one: in cluster mode, while it listens to the room.
func (b *Broker) inChatFlow(room string, f func(c *chatFlow)) {
	if b.cluster == nil {
		return
	}
	c := b.chatFlow(room)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// lockedChat records that room's chat lock was taken after batch seq: the
// server waits until it has delivered that batch before delivering its
// own, so when this node has not received it within chatGapWait, it is
// recovered.
func (b *Broker) lockedChat(room string, seq uint64) {
	b.inChatFlow(room, func(c *chatFlow) {
		if mark, known := c.mark(); known && seq > mark {
			b.checkChatLater(room, seq, 0)
		}
	})
}

// chatGapWait is how long a batch this node knows of may take to arrive
// before it counts as missed: it is usually on its way, published just
// before the reply that told of it.
const chatGapWait = 100 * time.Millisecond

// checkChatLater recovers room's chat unless batch seq has arrived after
// chatGapWait; when it has, this node's own batch then, published right
// after it, counts as seen.
func (b *Broker) checkChatLater(room string, seq, then uint64) {
	time.AfterFunc(chatGapWait, func() {
		if b.ctx.Err() != nil {
			return
		}
		b.inChatFlow(room, func(c *chatFlow) {
			switch mark, known := c.mark(); {
			case !known:
				// Nothing received yet to measure a gap against: the
				// first batch received will be.
			case mark < seq:
				b.recoverLocked(c, room)
			default:
				c.seen = max(c.seen, then)
			}
		})
	})
}

// readChatSeq records that RoomState read room's chat position (see
// chatFlow.base).
func (b *Broker) readChatSeq(room string, seq uint64) {
	b.inChatFlow(room, func(c *chatFlow) { c.base, c.baseRead = max(c.base, seq), true })
}

// recoverLocked holds room's live chat back and has its backlog read.
// c.mu held.
func (b *Broker) recoverLocked(c *chatFlow, room string) {
	if !c.recovering {
		c.recovering = true
		b.recoverLater(room, false)
	}
}

// dispatchChat delivers a chat message received on room's channel, or
// holds it back and has the backlog read when batches were missed.
func (b *Broker) dispatchChat(room, origin, rest string) {
	m, ok := parseChat(origin, rest)
	if !ok {
		b.log.Warn("cluster: undecodable chat from another node", "room", room, "from", origin)
		return
	}
	if b.cluster == nil {
		b.deliverChat(room, m)
		return
	}
	b.inChatFlow(room, func(c *chatFlow) {
		mark, markKnown := c.mark()
		switch {
		case c.recovering:
			c.held = append(c.held, m)
		case c.known && m.seq <= c.seen:
			// Delivered already.
		case m.prev > mark && markKnown:
			c.held = append(c.held, m)
			b.recoverLocked(c, room)
		default:
			b.deliverChat(room, m)
			c.seen, c.known = m.seq, true
		}
	})
}

// deliverChat hands a chat batch to the sink.
func (b *Broker) deliverChat(room string, m chatMsg) {
	var msgs []protocol.StoredChatMessage
	if err := json.Unmarshal([]byte(m.body), &msgs); err != nil {
		b.log.Warn("cluster: undecodable chat from another node", "room", room, "from", m.origin, "err", err)
		return
	}
	b.sink.Chat(room, m.seq, msgs)
}

// recoverChat reads room's chat backlog and delivers, in order, the
// batches this node missed, then the live ones held back meanwhile.
func (b *Broker) recoverChat(room string) {
	c := b.chatFlow(room)
	if c == nil {
		return
	}
	c.mu.Lock()
	if _, known := c.mark(); !known {
		// Nothing to measure a gap against: the server reads the room's
		// chat position when it synchronises it.
		c.recovering = false
		held := c.held
		c.held = nil
		for _, m := range held {
			if !c.known || m.seq > c.seen {
				b.deliverChat(room, m)
				c.seen, c.known = m.seq, true
			}
		}
		c.mu.Unlock()
		return
	}
	c.recovering = true
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	entries, err := b.rdb.LRange(ctx, b.k.chatBacklog(room), 0, -1).Result()
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		b.failed(err)
		b.log.Warn("cluster: could not read a room's chat backlog; chat missed during a slot move is not delivered here", "room", room, "err", err)
	}
	start, _ := c.mark()
	var missed []chatMsg
	for _, e := range entries {
		if len(e) < 2 || e[0] != 'C' {
			continue
		}
		origin, rest, ok := strings.Cut(e[1:], "\n")
		if m, ok2 := parseChat(origin, rest); ok && ok2 && m.seq > start {
			missed = append(missed, m)
		}
	}
	if len(missed) > 0 && missed[0].prev > start {
		b.log.Warn("cluster: chat missed during a slot move is older than the room's backlog; some of it is not delivered here", "room", room)
	}
	held := c.held
	c.held, c.recovering = nil, false
	for _, m := range append(missed, held...) {
		if c.known && m.seq <= c.seen {
			continue
		}
		if m.origin != b.node {
			b.deliverChat(room, m)
		}
		c.seen, c.known = m.seq, true
	}
}
