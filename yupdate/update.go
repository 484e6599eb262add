package yupdate

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// ID identifies one unit of content: the client that created it and the
// client's clock (its count of units inserted before this one).
type ID struct {
	Client uint64
	Clock  uint64
}

// Kind tells the three kinds of struct apart.
type Kind uint8

const (
	// KindItem is an insertion with content (info byte's low 5 bits 1-9).
	KindItem Kind = iota
	// KindGC is a garbage-collected range (content type 0).
	KindGC
	// KindSkip is a hole in an update: clocks it does not carry
	// (content type 10). Yjs writes skips in merged updates.
	KindSkip
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindItem:
		return "Item"
	case KindGC:
		return "GC"
	case KindSkip:
		return "Skip"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParentKind says how an item names its parent when it has neither origin
// nor right origin.
type ParentKind uint8

const (
	// ParentNone: the item has an origin or a right origin, so the
	// parent is not written (it is the origin's parent).
	ParentNone ParentKind = iota
	// ParentRoot: the parent is a root type, named by ParentName.
	ParentRoot
	// ParentItem: the parent is the type created by item ParentID.
	ParentItem
)

// Struct is one decoded struct of an update: an Item, a GC range or a
// Skip. Length counts clock units (UTF-16 code units for strings).
type Struct struct {
	Kind   Kind
	ID     ID
	Length uint64

	// The rest is for items only.

	HasOrigin      bool
	Origin         ID // the item's left neighbour when it was inserted
	HasRightOrigin bool
	RightOrigin    ID // the item's right neighbour when it was inserted

	Parent     ParentKind
	ParentName string // Parent == ParentRoot
	ParentID   ID     // Parent == ParentItem

	// HasParentSub is the info byte's parentSub flag (bit 6). ParentSub,
	// the map key, is written only when the parent is (Parent !=
	// ParentNone); otherwise Yjs takes it from the origin.
	HasParentSub bool
	ParentSub    string

	Content Content
}

// End is the clock after the struct's last unit.
func (s *Struct) End() uint64 { return s.ID.Clock + s.Length }

// Range is a run of deleted clocks of one client.
type Range struct {
	Clock uint64
	Len   uint64
}

// ClientDeletes lists the deleted ranges of one client.
type ClientDeletes struct {
	Client uint64
	Ranges []Range
}

// DeleteSet is an update's delete set, in the order it was encoded.
type DeleteSet []ClientDeletes

// Update is a decoded Yjs v1 update: its structs in encoded order
// (grouped by client, each group's clocks contiguous) and its delete set.
type Update struct {
	Structs   []Struct
	DeleteSet DeleteSet
}

// Decode parses a Yjs v1 update. It never panics and allocates at most in
// proportion to len(update): every count and length prefix is checked
// against the input left. Trailing bytes after the delete set are an
// error (Yjs ignores them).
func Decode(update []byte) (*Update, error) {
	u, _, err := decode(update, nil)
	return u, err
}

// decode is Decode, also returning the update's client groups when groups
// is not nil (appended to it).
func decode(update []byte, groups []groupSpan) (*Update, []groupSpan, error) {
	r := reader{buf: update}
	u := &Update{}
	keep := groups != nil
	if err := decodeStructs(&r, func(s *Struct) error {
		u.Structs = append(u.Structs, *s)
		return nil
	}, func(client uint64, n int) {
		u.Structs = slices.Grow(u.Structs, n)
		if keep {
			groups = append(groups, groupSpan{client: client, start: len(u.Structs)})
		}
	}); err != nil {
		return nil, nil, err
	}
	ds, err := decodeDeleteSet(&r)
	if err != nil {
		return nil, nil, err
	}
	u.DeleteSet = ds
	if r.remaining() != 0 {
		return nil, nil, errTrailingData
	}
	return u, closeSpans(groups, len(u.Structs)), nil
}

// decodeStructs reads the struct section, calling fn for each struct. The
// Struct passed to fn is reused; fn copies it if it keeps it. group, when
// not nil, is told each group's client and count of structs before them
// (the count bounded by the input left, each struct taking at least two
// bytes), so that a caller keeping them can allocate once and see where
// groups begin.
func decodeStructs(r *reader, fn func(*Struct) error, group func(client uint64, n int)) error {
	groups, err := r.uvarint()
	if err != nil {
		return err
	}
	var s Struct
	for g := uint64(0); g < groups; g++ {
		n, err := r.uvarint()
		if err != nil {
			return err
		}
		client, err := r.uvarint()
		if err != nil {
			return err
		}
		clock, err := r.uvarint()
		if err != nil {
			return err
		}
		if group != nil {
			group(client, int(min(n, uint64(r.remaining()/2))))
		}
		for i := uint64(0); i < n; i++ {
			s = Struct{}
			if err := decodeStruct(r, &s, client, clock); err != nil {
				return err
			}
			clock += s.Length
			if clock > MaxSafeInteger {
				return errClockOverflow
			}
			if err := fn(&s); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeStruct(r *reader, s *Struct, client, clock uint64) error {
	info, err := r.byte()
	if err != nil {
		return err
	}
	s.ID = ID{client, clock}
	ref := info & 0x1f
	switch {
	case info == 10:
		s.Kind = KindSkip
		return decodeLength(r, s)
	case ref == 0:
		s.Kind = KindGC
		return decodeLength(r, s)
	}
	s.Kind = KindItem
	if info&0x80 != 0 {
		s.HasOrigin = true
		if s.Origin.Client, err = r.uvarint(); err != nil {
			return err
		}
		if s.Origin.Clock, err = r.uvarint(); err != nil {
			return err
		}
	}
	if info&0x40 != 0 {
		s.HasRightOrigin = true
		if s.RightOrigin.Client, err = r.uvarint(); err != nil {
			return err
		}
		if s.RightOrigin.Clock, err = r.uvarint(); err != nil {
			return err
		}
	}
	s.HasParentSub = info&0x20 != 0
	if info&0xc0 == 0 {
		isKey, err := r.uvarint()
		if err != nil {
			return err
		}
		if isKey == 1 {
			s.Parent = ParentRoot
			if s.ParentName, err = r.string(); err != nil {
				return err
			}
		} else {
			s.Parent = ParentItem
			if s.ParentID.Client, err = r.uvarint(); err != nil {
				return err
			}
			if s.ParentID.Clock, err = r.uvarint(); err != nil {
				return err
			}
		}
		if s.HasParentSub {
			if s.ParentSub, err = r.string(); err != nil {
				return err
			}
		}
	}
	c, err := decodeContent(r, ref)
	if err != nil {
		return err
	}
	s.Content = c
	s.Length = c.Len()
	if s.Length == 0 {
		return errEmptyStruct
	}
	return checkReferences(s)
}

// decodeLength reads the length of a GC or skip struct, which Yjs never
// writes as 0.
func decodeLength(r *reader, s *Struct) error {
	var err error
	if s.Length, err = r.uvarint(); err != nil {
		return err
	}
	if s.Length == 0 {
		return errEmptyStruct
	}
	return nil
}

// checkReferences refuses an item whose origin, right origin or parent
// is itself or a later item of its own client: what an item refers to
// existed before it, so its clock is lower. Yjs cannot integrate such an
// item (it waits for it forever, or loops), and a document holding one
// no longer loads for anyone.
func checkReferences(s *Struct) error {
	own := func(id ID) bool { return id.Client == s.ID.Client && id.Clock >= s.ID.Clock }
	if (s.HasOrigin && own(s.Origin)) || (s.HasRightOrigin && own(s.RightOrigin)) || (s.Parent == ParentItem && own(s.ParentID)) {
		return errForwardRef
	}
	return nil
}

func decodeDeleteSet(r *reader) (DeleteSet, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	// Each client takes at least two bytes.
	ds := make(DeleteSet, 0, min(n, uint64(r.remaining()/2)))
	for i := uint64(0); i < n; i++ {
		client, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		m, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		ranges := make([]Range, 0, min(m, uint64(r.remaining()/2)))
		for j := uint64(0); j < m; j++ {
			clock, err := r.uvarint()
			if err != nil {
				return nil, err
			}
			l, err := r.uvarint()
			if err != nil {
				return nil, err
			}
			if clock+l > MaxSafeInteger {
				return nil, errClockOverflow
			}
			ranges = append(ranges, Range{clock, l})
		}
		ds = append(ds, ClientDeletes{client, ranges})
	}
	return ds, nil
}

// Encode writes the update in the Yjs v1 format. For an update Decode
// returned, the result equals the input byte for byte when Yjs produced it.
// A new client group starts whenever the client changes or the clocks are
// not contiguous.
func (u *Update) Encode() []byte {
	var e encoder
	for i := range u.Structs {
		e.add(&u.Structs[i], 0)
	}
	return e.finish(u.DeleteSet)
}

// Validate checks what Encode relies on: item content lengths match Length
// and item content is present.
func (u *Update) Validate() error {
	for i := range u.Structs {
		s := &u.Structs[i]
		if s.Kind == KindItem && (s.Content == nil || s.Content.Len() != s.Length) {
			return errNonCanonicalLen
		}
		if s.Kind == KindItem {
			if cs, ok := s.Content.(ContentString); ok && !utf8.ValidString(cs.Str) {
				return errInvalidUTF8
			}
		}
	}
	return nil
}

// encoder writes structs the way Yjs's lazy struct writer does: structs of
// one client in a row form a group whose count is written before it.
type encoder struct {
	cur    []byte // the open group's structs
	n      uint64 // structs in the open group
	client uint64
	start  uint64
	next   uint64 // the clock after the open group's last struct
	parts  [][]byte
	counts []groupHead
}

type groupHead struct {
	n, client, clock uint64
}

func (e *encoder) flush() {
	if e.n == 0 {
		return
	}
	e.counts = append(e.counts, groupHead{e.n, e.client, e.start})
	e.parts = append(e.parts, e.cur)
	e.cur = nil
	e.n = 0
}

// add writes s from offset on (offset > 0 writes its tail only, the way
// Yjs's struct.write(encoder, offset) does).
func (e *encoder) add(s *Struct, offset uint64) {
	if e.n > 0 && (e.client != s.ID.Client || e.next != s.ID.Clock+offset) {
		e.flush()
	}
	if e.n == 0 {
		e.client = s.ID.Client
		e.start = s.ID.Clock + offset
	}
	e.cur = appendStruct(e.cur, s, offset)
	e.n++
	e.next = s.ID.Clock + s.Length
}

func (e *encoder) finish(ds DeleteSet) []byte {
	e.flush()
	size := 8
	for _, p := range e.parts {
		size += len(p) + 12
	}
	out := make([]byte, 0, size+16*len(ds))
	out = appendUvarint(out, uint64(len(e.parts)))
	for i, p := range e.parts {
		h := e.counts[i]
		out = appendUvarint(out, h.n)
		out = appendUvarint(out, h.client)
		out = appendUvarint(out, h.clock)
		out = append(out, p...)
	}
	return appendDeleteSet(out, ds)
}

func appendDeleteSet(b []byte, ds DeleteSet) []byte {
	b = appendUvarint(b, uint64(len(ds)))
	for _, c := range ds {
		b = appendUvarint(b, c.Client)
		b = appendUvarint(b, uint64(len(c.Ranges)))
		for _, r := range c.Ranges {
			b = appendUvarint(b, r.Clock)
			b = appendUvarint(b, r.Len)
		}
	}
	return b
}

func appendStruct(b []byte, s *Struct, offset uint64) []byte {
	switch s.Kind {
	case KindGC:
		b = append(b, 0)
		return appendUvarint(b, s.Length-offset)
	case KindSkip:
		b = append(b, 10)
		return appendUvarint(b, s.Length-offset)
	}
	hasOrigin, origin := s.HasOrigin, s.Origin
	if offset > 0 {
		hasOrigin, origin = true, ID{s.ID.Client, s.ID.Clock + offset - 1}
	}
	info := s.Content.Ref() & 0x1f
	if hasOrigin {
		info |= 0x80
	}
	if s.HasRightOrigin {
		info |= 0x40
	}
	if s.HasParentSub {
		info |= 0x20
	}
	b = append(b, info)
	if hasOrigin {
		b = appendUvarint(b, origin.Client)
		b = appendUvarint(b, origin.Clock)
	}
	if s.HasRightOrigin {
		b = appendUvarint(b, s.RightOrigin.Client)
		b = appendUvarint(b, s.RightOrigin.Clock)
	}
	if !hasOrigin && !s.HasRightOrigin {
		if s.Parent == ParentRoot {
			b = appendUvarint(b, 1)
			b = appendString(b, s.ParentName)
		} else {
			b = appendUvarint(b, 0)
			b = appendUvarint(b, s.ParentID.Client)
			b = appendUvarint(b, s.ParentID.Clock)
		}
		if s.HasParentSub {
			b = appendString(b, s.ParentSub)
		}
	}
	return s.Content.appendTo(b, offset)
}
