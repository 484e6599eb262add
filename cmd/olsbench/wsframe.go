package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// errFrameTooLarge rejects a frame the generator will not buffer.
var errFrameTooLarge = errors.New("frame too large")

// frameReader splits the server→client byte stream of one connection into
// messages. The epoll reader feeds it whatever one read(2) returned, so a
// frame may arrive in pieces and one read may hold many frames; it keeps only
// the unfinished tail between reads, and nothing at all for an idle
// connection.
type frameReader struct {
	pending []byte // unparsed tail of the stream
	frag    []byte // data message being reassembled from fragments
	fragOp  byte
	inFrag  bool
}

// frameSink receives what the stream holds: complete data messages and
// control frames. The slices are valid only during the call.
type frameSink interface {
	message(op byte, payload []byte)
	control(op byte, payload []byte)
}

// feed parses data (appended to any pending tail) and delivers every complete
// message to sink. data may be reused by the caller after feed returns.
func (fr *frameReader) feed(data []byte, sink frameSink) error {
	buf := data
	if len(fr.pending) > 0 {
		fr.pending = append(fr.pending, data...)
		buf = fr.pending
	}
	off := 0
	for {
		n, err := fr.next(buf[off:], sink)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		off += n
	}
	rest := buf[off:]
	switch {
	case len(rest) == 0:
		fr.pending = fr.pending[:0]
		if cap(fr.pending) > keepReadBuf {
			fr.pending = nil // do not pin a huge snapshot's buffer
		}
	case len(fr.pending) > 0 && off == 0:
		// buf is pending itself and nothing was taken: it stays as it is
		// (copying a large frame onto itself at every read adds up).
	case len(fr.pending) > 0:
		// buf is pending itself: move the tail to the front.
		fr.pending = fr.pending[:copy(fr.pending, rest)]
	default:
		fr.pending = append(fr.pending[:0], rest...)
	}
	return nil
}

// spare returns where the next read can go straight into the pending tail:
// the rest of the frame it starts, the buffer grown to hold it, when that
// frame is larger than small; else nil. Reading there spares copying a
// snapshot of hundreds of kilobytes out of the scratch buffer piece by piece.
func (fr *frameReader) spare(small int) []byte {
	total := frameSize(fr.pending)
	if total <= small {
		return nil
	}
	if cap(fr.pending) < total {
		b := make([]byte, len(fr.pending), total)
		copy(b, fr.pending)
		fr.pending = b
	}
	return fr.pending[len(fr.pending):total]
}

// filled takes n bytes read into spare and delivers what is now complete.
func (fr *frameReader) filled(n int, sink frameSink) error {
	fr.pending = fr.pending[:len(fr.pending)+n]
	return fr.feed(nil, sink)
}

// frameSize is the length of the frame b starts, header included, or 0
// while b does not hold the whole header or the frame is too large.
func frameSize(b []byte) int {
	length, hdr := frameHeader(b)
	if hdr == 0 || length > maxFrameBytes {
		return 0
	}
	return hdr + int(length)
}

// frameHeader reads the header b starts: the payload's length and the
// header's, mask key included; hdr is 0 while b does not hold it all.
func frameHeader(b []byte) (length uint64, hdr int) {
	if len(b) < 2 {
		return 0, 0
	}
	length, hdr = uint64(b[1]&0x7f), 2
	switch length {
	case 126:
		if len(b) < 4 {
			return 0, 0
		}
		length, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, 0
		}
		length, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	if b[1]&0x80 != 0 {
		hdr += 4
	}
	if len(b) < hdr {
		return 0, 0
	}
	return length, hdr
}

// next parses one frame at the start of b and returns its length, or 0 when
// b does not yet hold a whole frame.
func (fr *frameReader) next(b []byte, sink frameSink) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin := b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return 0, errors.New("reserved bits set (compression was not negotiated)")
	}
	op := b[0] & 0x0f
	masked := b[1]&0x80 != 0
	length, hdr := frameHeader(b)
	if hdr == 0 {
		return 0, nil
	}
	if length > maxFrameBytes {
		return 0, fmt.Errorf("%w: %d bytes", errFrameTooLarge, length)
	}
	var key []byte
	if masked { // servers must not mask, but unmasking costs nothing to support
		key = b[hdr-4 : hdr]
	}
	total := hdr + int(length)
	if len(b) < total {
		return 0, nil
	}
	payload := b[hdr:total]
	if masked {
		for j := range payload {
			payload[j] ^= key[j&3]
		}
	}

	switch op {
	case opText, opBinary:
		if fr.inFrag {
			return 0, errors.New("new data frame inside a fragmented message")
		}
		if fin {
			sink.message(op, payload)
		} else {
			fr.inFrag, fr.fragOp = true, op
			fr.frag = append(fr.frag[:0], payload...)
		}
	case opContinuation:
		if !fr.inFrag {
			return 0, errors.New("continuation frame without a start")
		}
		if uint64(len(fr.frag))+length > maxFrameBytes {
			return 0, fmt.Errorf("%w: fragmented message", errFrameTooLarge)
		}
		fr.frag = append(fr.frag, payload...)
		if fin {
			sink.message(fr.fragOp, fr.frag)
			fr.inFrag = false
			fr.frag = fr.frag[:0]
			if cap(fr.frag) > keepReadBuf {
				fr.frag = nil
			}
		}
	case opClose, opPing, opPong:
		if !fin || length > 125 {
			return 0, errors.New("invalid control frame")
		}
		sink.control(op, payload)
	default:
		return 0, fmt.Errorf("unknown opcode %d", op)
	}
	return total, nil
}

// appendClientFrame appends one final, masked frame (clients must mask,
// RFC 6455 §5.3) carrying payload.
func appendClientFrame(b []byte, op byte, payload []byte, key uint32) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	b = append(b, k[:]...)
	for i, c := range payload {
		b = append(b, c^k[i&3])
	}
	return b
}
