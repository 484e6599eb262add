package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const testTimeout = 10 * time.Second

// testAliveBytes is how much the test peers' unfinished messages grow by
// to show them alive (SetAliveBytes).
const testAliveBytes = 100

// recorder is a Handler that records what it is told.
type recorder struct {
	msgs   chan string // "t:" or "b:" and the data
	alive  chan struct{}
	closed chan error // every call to Closed, so that a second one shows
}

func newRecorder() *recorder {
	return &recorder{msgs: make(chan string, 64), alive: make(chan struct{}, 8), closed: make(chan error, 2)}
}

func (r *recorder) Message(text bool, data []byte) {
	kind := "b:"
	if text {
		kind = "t:"
	}
	r.msgs <- kind + string(data)
}

// Alive records the call; beyond the 8 unread it does not block the
// reader (a large frame under way makes one per testAliveBytes).
func (r *recorder) Alive() {
	select {
	case r.alive <- struct{}{}:
	default:
	}
}
func (r *recorder) Closed(err error) {
	select {
	case r.closed <- err:
	default: // a third call: the second one, still buffered, fails the test
	}
}

// peer is the client side: a raw socket after a real handshake.
type peer struct {
	t  *testing.T
	nc net.Conn
	sc *Conn     // the server side
	h  *recorder // its handler
}

// eachMode runs f with the poller and with a goroutine per connection.
func eachMode(t *testing.T, f func(t *testing.T, dial func(limit int64) *peer)) {
	for _, mode := range []struct {
		name     string
		noPoller bool
	}{{"poller", false}, {"goroutine", true}} {
		t.Run(mode.name, func(t *testing.T) {
			u := NewUpgrader(UpgradeOptions{NoPoller: mode.noPoller})
			if !mode.noPoller && u.poller() == nil {
				t.Skip("no poller on this system")
			}
			conns := make(chan *Conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := u.Upgrade(w, r)
				if err == nil {
					conns <- c
				}
			}))
			var peers []*peer
			t.Cleanup(func() {
				for _, p := range peers {
					p.nc.Close()
					p.sc.Close()
				}
				srv.Close()
				u.Close()
			})
			dial := func(limit int64) *peer {
				wc, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
				if err != nil {
					t.Fatal(err)
				}
				p := &peer{t: t, nc: wc.NetConn(), sc: <-conns, h: newRecorder()}
				p.sc.SetAliveBytes(testAliveBytes)
				p.sc.Serve(p.h, limit)
				peers = append(peers, p)
				return p
			}
			f(t, dial)
		})
	}
}

// clientFrame encodes a masked client frame with the raw first byte b0.
func clientFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, key...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

const fin = 0x80

func (p *peer) write(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// readFrame reads one server frame: its opcode and payload.
func (p *peer) readFrame() (byte, []byte) {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(testTimeout))
	var h [10]byte
	if _, err := io.ReadFull(p.nc, h[:2]); err != nil {
		p.t.Fatalf("reading a frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		io.ReadFull(p.nc, h[2:4])
		n = int(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		io.ReadFull(p.nc, h[2:10])
		n = int(binary.BigEndian.Uint64(h[2:10]))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.nc, b); err != nil {
		p.t.Fatal(err)
	}
	return h[0] & 0x0f, b
}

// expectClose reads the server's close frame and checks its code.
func (p *peer) expectClose(code int) {
	p.t.Helper()
	op, b := p.readFrame()
	if op != opClose || len(b) < 2 || int(binary.BigEndian.Uint16(b)) != code {
		p.t.Fatalf("got opcode %d payload %q, want close %d", op, b, code)
	}
}

func (p *peer) expectMsg(want string) {
	p.t.Helper()
	select {
	case got := <-p.h.msgs:
		if got != want {
			p.t.Fatalf("message %.60q, want %.60q", got, want)
		}
	case <-time.After(testTimeout):
		p.t.Fatalf("no message; want %.60q", want)
	}
}

// expectAlive waits for the handler to hear the peer is alive.
func (p *peer) expectAlive() {
	p.t.Helper()
	select {
	case <-p.h.alive:
	case <-time.After(testTimeout):
		p.t.Fatal("Alive not called")
	}
}

func (p *peer) expectClosed(is func(error) bool) error {
	p.t.Helper()
	select {
	case err := <-p.h.closed:
		if !is(err) {
			p.t.Fatalf("Closed(%v)", err)
		}
		return err
	case <-time.After(testTimeout):
		p.t.Fatal("Closed not called")
	}
	return nil
}

func TestReadMessages(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(1 << 20)
		p.write(clientFrame(fin|opText, []byte(`{"type":"a"}`)))
		p.expectMsg(`t:{"type":"a"}`)
		p.write(clientFrame(fin|opBinary, []byte{0, 1, 2}))
		p.expectMsg("b:\x00\x01\x02")

		// Several in one write, then one a byte at a time.
		var batch []byte
		for _, s := range []string{"one", "two", "three"} {
			batch = append(batch, clientFrame(fin|opText, []byte(s))...)
		}
		p.write(batch)
		p.expectMsg("t:one")
		p.expectMsg("t:two")
		p.expectMsg("t:three")
		for _, b := range clientFrame(fin|opText, []byte("slowly")) {
			p.write([]byte{b})
			time.Sleep(time.Millisecond)
		}
		p.expectMsg("t:slowly")

		// Larger than any read buffer, with both extended lengths.
		for _, n := range []int{300, 200 << 10} {
			big := bytes.Repeat([]byte("x"), n)
			p.write(clientFrame(fin|opText, big))
			p.expectMsg("t:" + string(big))
		}

		// A fragmented message with a ping between its fragments; its
		// first frame shows the peer alive (the frames above did too, as
		// they came).
		for len(p.h.alive) > 0 {
			<-p.h.alive
		}
		p.write(clientFrame(opText, []byte("frag")))
		p.write(clientFrame(fin|opPing, []byte("hi")))
		p.write(clientFrame(opContinuation, []byte("men")))
		p.write(clientFrame(fin|opContinuation, []byte("ted")))
		p.expectMsg("t:fragmented")
		p.expectAlive()
		if op, b := p.readFrame(); op != opPong || string(b) != "hi" {
			t.Fatalf("reply to ping: opcode %d %q", op, b)
		}
		p.write(clientFrame(fin|opPong, nil))
		p.expectAlive()

		// The peer closes: the close is answered and reported, once.
		p.write(clientFrame(fin|opClose, append(binary.BigEndian.AppendUint16(nil, 4000), "bye"...)))
		p.expectClose(4000)
		err := p.expectClosed(func(err error) bool { return CloseCode(err) == 4000 })
		if ce := err.(*CloseError); ce.Text != "bye" {
			t.Fatalf("close text %q", ce.Text)
		}
		p.sc.Close()
		select {
		case err := <-p.h.closed:
			t.Fatalf("Closed called again: %v", err)
		case <-time.After(50 * time.Millisecond): // observing an absence
		}
	})
}

// TestUnfinishedMessageShowsLifeAsItGrows: an unfinished message shows
// its peer alive once as it begins (its first frame's header has come,
// whether the message is in one frame or several) and each time it has
// grown by SetAliveBytes since it last did, a frame under way counting as
// it comes; pongs between its frames do not, a pong between messages does.
func TestUnfinishedMessageShowsLifeAsItGrows(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(1 << 20)
		half := bytes.Repeat([]byte("x"), testAliveBytes/2)
		quarter := len(half) / 2
		first := clientFrame(opBinary, half)
		p.write(first[:len(first)-quarter]) // it begins: alive
		p.expectAlive()
		p.write(first[len(first)-quarter:])        // its first frame is whole: not again
		p.write(clientFrame(fin|opPong, nil))      // not
		p.write(clientFrame(opContinuation, half)) // 0.75 × testAliveBytes since: not
		p.write(clientFrame(fin|opPong, nil))      // not
		p.write(clientFrame(opContinuation, half)) // 1.25 × testAliveBytes since: alive
		// A frame of 1.5 × testAliveBytes, of which 1.1 × come first: alive
		// before the rest comes.
		long := clientFrame(opContinuation, bytes.Repeat([]byte("x"), 3*testAliveBytes/2))
		rest := long[len(long)-2*testAliveBytes/5:]
		p.write(long[:len(long)-len(rest)])
		p.expectAlive()
		p.expectAlive()
		p.write(rest) // 0.4 × testAliveBytes since: not
		p.write(clientFrame(fin|opContinuation, half))
		p.expectMsg("b:" + strings.Repeat("x", 7*testAliveBytes/2))
		// Alive and Message are called in order: by now it has been told.
		if n := len(p.h.alive); n != 0 {
			t.Fatalf("Alive called %d times more than expected during the message", n)
		}
		p.write(clientFrame(fin|opPong, nil))
		p.expectAlive()

		// A message in one frame (as Firefox sends a large one) shows
		// life as it begins too, once, and then as it grows.
		one := clientFrame(fin|opText, bytes.Repeat([]byte("y"), 3*testAliveBytes/2))
		rest = one[len(one)-testAliveBytes:]
		p.write(one[:len(one)-len(rest)]) // it begins: alive
		p.expectAlive()
		p.write(rest[:len(rest)/2]) // 0.5 × testAliveBytes since: not
		p.write(rest[len(rest)/2:]) // its end, 1 × since: the message
		p.expectMsg("t:" + strings.Repeat("y", 3*testAliveBytes/2))
		if n := len(p.h.alive); n != 0 {
			t.Fatalf("Alive called %d times more than expected during the message in one frame", n)
		}
	})
}

func TestReadRejectsBadFrames(t *testing.T) {
	unmasked := []byte{fin | opText, 2, 'h', 'i'}
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
		is    error
	}{
		{"unmasked", unmasked, closeProtocolError, ErrProtocol},
		{"reserved bit", clientFrame(fin|0x40|opText, []byte("x")), closeProtocolError, ErrProtocol},
		{"unknown opcode", clientFrame(fin|0x3, []byte("x")), closeProtocolError, ErrProtocol},
		{"lone continuation", clientFrame(fin|opContinuation, []byte("x")), closeProtocolError, ErrProtocol},
		{"long ping", clientFrame(fin|opPing, make([]byte, 126)), closeProtocolError, ErrProtocol},
		{"fragmented ping", clientFrame(opPing, []byte("x")), closeProtocolError, ErrProtocol},
		{"one-byte close", clientFrame(fin|opClose, []byte{3}), closeProtocolError, ErrProtocol},
		{"message in a message", append(clientFrame(opText, []byte("a")), clientFrame(fin|opText, []byte("b"))...), closeProtocolError, ErrProtocol},
		{"over the limit", clientFrame(fin|opText, make([]byte, 101)), closeTooLarge, ErrReadLimit},
		{"fragments over the limit", append(clientFrame(opText, make([]byte, 60)), clientFrame(fin|opContinuation, make([]byte, 60))...), closeTooLarge, ErrReadLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachMode(t, func(t *testing.T, dial func(int64) *peer) {
				p := dial(100)
				p.write(clientFrame(fin|opText, []byte("before")))
				p.expectMsg("t:before")
				p.write(tc.frame)
				p.expectClose(tc.code)
				p.expectClosed(func(err error) bool { return errors.Is(err, tc.is) })
				select {
				case m := <-p.h.msgs:
					t.Fatalf("message %q delivered from a bad frame", m)
				default:
				}
			})
		})
	}
}

func TestCloseAndDeadline(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		// Closed by the server: reported once, and the client sees the end.
		p := dial(100)
		p.sc.Close()
		p.expectClosed(func(err error) bool { return errors.Is(err, net.ErrClosed) })
		p.nc.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := p.nc.Read(make([]byte, 1)); err == nil {
			t.Fatal("client read after the server closed")
		}

		// A read deadline ends an idle connection.
		q := dial(100)
		start := time.Now()
		q.sc.SetReadDeadline(start.Add(50 * time.Millisecond))
		q.expectClosed(func(err error) bool { return errors.Is(err, net.ErrClosed) })
		if waited := time.Since(start); waited < 50*time.Millisecond {
			t.Fatalf("closed after %v, before the deadline", waited)
		}
	})
}

func TestUnmask(t *testing.T) {
	key := []byte{1, 2, 3, 4}
	for n := range 20 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		want := make([]byte, n)
		for i := range p {
			want[i] = p[i] ^ key[i%4]
		}
		unmask(p, key)
		if !bytes.Equal(p, want) {
			t.Fatalf("unmask %d bytes: %v, want %v", n, p, want)
		}
	}
}

// TestGrowFollowsTheData: a header claiming a large message does not make
// the reader allocate it before the bytes come.
func TestGrowFollowsTheData(t *testing.T) {
	c := &Conn{limit: 1 << 20}
	head := clientFrame(fin|opText, make([]byte, 1<<20))[:readBufSize]
	buf := append(make([]byte, 0, readBufSize), head...)
	if got := cap(c.grow(buf)); got != 2*readBufSize {
		t.Fatalf("grew to %d bytes, want %d", got, 2*readBufSize)
	}
	small := append(make([]byte, 0, readBufSize), clientFrame(fin|opText, make([]byte, readBufSize))[:readBufSize]...)
	if got, want := cap(c.grow(small)), readBufSize+8; got != want {
		t.Fatalf("grew to %d bytes for a frame of %d", got, want)
	}
}

// offerConn records the room each Read of the reader offers: the free
// part of its read buffer, which is all of it between frames.
type offerConn struct {
	net.Conn
	offered atomic.Int64 // by the last Read that returned data
}

func (c *offerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.offered.Store(int64(len(b)))
	}
	return n, err
}

// TestReaderKeepsNoLargeBufferBetweenFrames: a connection read by a
// goroutine of its own (TLS, or no poller) gives up the buffer a large
// frame grew once the frame is read, as the poller does when it parks
// one: an idle peer, kept by its pongs, holds no buffer of up to the
// message limit.
func TestReaderKeepsNoLargeBufferBetweenFrames(t *testing.T) {
	server, client := net.Pipe()
	nc := &offerConn{Conn: server}
	p := &peer{t: t, nc: client, sc: &Conn{nc: nc}, h: newRecorder()}
	t.Cleanup(func() {
		client.Close()
		p.sc.Close()
	})
	p.sc.Serve(p.h, 1<<20)
	big := bytes.Repeat([]byte("x"), 4*maxPooledReadBuf)
	p.write(clientFrame(fin|opBinary, big))
	p.expectMsg("b:" + string(big))
	p.write(clientFrame(fin|opPong, nil))
	p.expectAlive() // the pong is read
	if got := nc.offered.Load(); got > maxPooledReadBuf {
		t.Fatalf("the reader read a pong after a %d-byte message into a buffer of %d bytes free: it kept the one the message grew", len(big), got)
	}
}
