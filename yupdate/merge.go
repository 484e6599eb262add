package yupdate

import (
	"slices"
)

// decodeForMerge decodes an update the way Yjs's lazy reader sees it: an
// item with an origin or right origin has no parentSub (its parentSub flag
// is dropped on re-encoding, as Yjs drops it), and skips are left out when
// dropSkips is set.
func decodeForMerge(update []byte, dropSkips bool) ([]Struct, DeleteSet, error) {
	return decodeForMergeInto(nil, update, dropSkips)
}

// decodeForMergeInto is decodeForMerge appending the structs to dst, so
// that many small updates share one allocation. The update is read as
// Y.applyUpdate reads it and brought into the layout Yjs writes (see
// canonical.go), so that what follows never meets a client twice.
func decodeForMergeInto(structs []Struct, update []byte, dropSkips bool) ([]Struct, DeleteSet, error) {
	r := reader{buf: update}
	base := len(structs)
	var buf [4]groupSpan
	groups := buf[:0]
	err := decodeStructs(&r, func(s *Struct) error {
		if s.Kind == KindSkip && dropSkips {
			return nil
		}
		if s.HasOrigin || s.HasRightOrigin {
			s.HasParentSub = false
			s.ParentSub = ""
		}
		structs = append(structs, *s)
		return nil
	}, func(client uint64, n int) {
		structs = slices.Grow(structs, n)
		groups = append(groups, groupSpan{client: client, start: len(structs) - base})
	})
	if err != nil {
		return nil, nil, err
	}
	ds, err := decodeDeleteSet(&r)
	if err != nil {
		return nil, nil, err
	}
	if r.remaining() != 0 {
		return nil, nil, errTrailingData
	}
	if groups = closeSpans(groups, len(structs)-base); !groupsCanonical(groups) {
		structs = append(structs[:base], canonicalStructs(structs[base:], groups)...)
	}
	return structs, ds, nil
}

// sliceStruct returns the part of s from diff on (0 < diff < s.Length).
func sliceStruct(s Struct, diff uint64) Struct {
	s.ID.Clock += diff
	s.Length -= diff
	if s.Kind == KindItem {
		s.HasOrigin = true
		s.Origin = ID{s.ID.Client, s.ID.Clock - 1}
		s.Content = s.Content.splitAt(diff)
	}
	return s
}

// mergeStructs appends right to left when Yjs would: GC ranges and skips
// merge with their own kind; decoded items never merge (Yjs compares the
// items' integrated neighbours, which decoded items lack).
func mergeStructs(left *Struct, right *Struct) bool {
	if left.Kind != right.Kind || left.Kind == KindItem {
		return false
	}
	left.Length += right.Length
	return true
}

// mergeDecoder walks one update's structs during a merge.
type mergeDecoder struct {
	structs []Struct
	pos     int
	seq     int64 // order among decoders whose current structs tie
	// The current struct's ID, kept here for the heap's comparisons,
	// which dominate a merge of many small updates.
	client, clock uint64
}

func (d *mergeDecoder) curr() *Struct {
	if d.pos < len(d.structs) {
		return &d.structs[d.pos]
	}
	return nil
}

func (d *mergeDecoder) next() *Struct {
	d.pos++
	s := d.curr()
	if s != nil {
		d.client, d.clock = s.ID.Client, s.ID.Clock
	}
	return s
}

// mergeHeap orders decoders the way Yjs sorts them before each step of a
// merge: higher client first, then lower clock. Yjs sorts stably, so among
// ties the decoder that moved last comes first; seq records that.
type mergeHeap []*mergeDecoder

func (h mergeHeap) less(i, j int) bool {
	a, b := h[i], h[j]
	if a.client != b.client {
		return a.client > b.client
	}
	if a.clock != b.clock {
		return a.clock < b.clock
	}
	return a.seq < b.seq
}

func (h mergeHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// MergeUpdates merges Yjs v1 updates into one, without a document, as
// Yjs's mergeUpdates does. The result is byte for byte what Yjs returns for
// the same inputs, except where Yjs's own order is unspecified (a GC range
// and an item at the same clock in two inputs). A single update is
// validated and returned as is, as Yjs returns it, unless it is laid out
// as Yjs never writes updates (see Canonical).
//
// Inputs are read as Y.applyUpdate reads them (a client listed twice
// keeps its last group), so that what Yjs would load merges to what it
// loads to. Inputs that overlap (the same update twice, an update and a
// state that holds it) merge to their union, each struct once.
//
// Where Yjs re-sorts every input at every step, this keeps them in a heap:
// merging n updates takes O(total structs · log n).
func MergeUpdates(updates [][]byte) ([]byte, error) {
	if len(updates) == 1 {
		return Canonical(updates[0])
	}
	// All inputs' structs in one slice and all decoders in another: a
	// compaction merges many updates of a struct or two each.
	all := make([]Struct, 0, structsHint(updates))
	ends := make([]int, len(updates))
	dss := make([]DeleteSet, len(updates))
	for i, u := range updates {
		var err error
		if all, dss[i], err = decodeForMergeInto(all, u, true); err != nil {
			return nil, err
		}
		ends[i] = len(all)
	}
	decoders := make([]mergeDecoder, len(updates))
	h := make(mergeHeap, 0, len(updates))
	start := 0
	for i, end := range ends {
		if start < end {
			d := &decoders[i]
			d.structs, d.seq = all[start:end:end], int64(i)
			d.client, d.clock = all[start].ID.Client, all[start].ID.Clock
			h = append(h, d)
		}
		start = end
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	var e encoder
	var cw Struct // the struct being written
	hasCW := false
	seq := int64(-1)
	for len(h) > 0 {
		d := h[0]
		first := d.curr().ID.Client
		if err := mergeStep(d, &cw, &hasCW, first, &e); err != nil {
			return nil, err
		}
		// Only d moved: put it back in order, first among its ties.
		if d.curr() == nil {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		} else {
			d.seq = seq
			seq--
		}
		h.down(0)
	}
	if hasCW {
		e.add(&cw, 0)
	}
	return e.finish(mergeDeleteSets(dss)), nil
}

// structsHint guesses how many structs updates hold from each one's first
// group count (exact for the single-client updates an editor sends), each
// bounded by what its bytes can hold, so that decoding allocates once.
func structsHint(updates [][]byte) int {
	n := 0
	for _, u := range updates {
		r := reader{buf: u}
		groups, err := r.uvarint()
		if err != nil || groups == 0 {
			continue
		}
		count, err := r.uvarint()
		if err != nil {
			continue
		}
		n += int(min(count, uint64(len(u)/2)))
	}
	return n
}

// mergeStep is one turn of Yjs's merge loop for the first decoder d.
func mergeStep(d *mergeDecoder, cw *Struct, hasCW *bool, first uint64, e *encoder) error {
	if *hasCW {
		curr := d.curr()
		iterated := false
		// Skip what has been written already (higher clients first).
		for curr != nil && curr.End() <= cw.End() && curr.ID.Client >= cw.ID.Client {
			curr = d.next()
			iterated = true
		}
		if curr == nil || curr.ID.Client != first || (iterated && curr.ID.Clock > cw.End()) {
			return nil
		}
		if first != cw.ID.Client {
			e.add(cw, 0)
			*cw = *curr
			d.next()
		} else if cw.End() < curr.ID.Clock {
			if cw.Kind == KindSkip {
				cw.Length = curr.End() - cw.ID.Clock
			} else {
				e.add(cw, 0)
				gap := curr.ID.Clock - cw.End()
				*cw = Struct{Kind: KindSkip, ID: ID{first, cw.End()}, Length: gap}
			}
		} else {
			diff := cw.End() - curr.ID.Clock
			c := *curr
			if diff > 0 {
				if cw.Kind == KindSkip {
					if diff > cw.Length {
						return errInconsistent
					}
					cw.Length -= diff
				} else {
					c = sliceStruct(c, diff)
				}
			}
			if !mergeStructs(cw, &c) {
				e.add(cw, 0)
				*cw = c
				d.next()
			}
		}
	} else {
		*cw = *d.curr()
		*hasCW = true
		d.next()
	}
	for next := d.curr(); next != nil && next.ID.Client == first && next.ID.Clock == cw.End() && next.Kind != KindSkip; next = d.next() {
		e.add(cw, 0)
		*cw = *next
	}
	return nil
}

// mergeDeleteSets merges delete sets as Yjs does: per client, all ranges
// in input order, sorted by clock, overlapping or adjacent ranges joined,
// clients in descending order.
func mergeDeleteSets(dss []DeleteSet) DeleteSet {
	byClient := map[uint64][]Range{}
	for _, ds := range dss {
		for _, c := range ds {
			if len(c.Ranges) > 0 {
				byClient[c.Client] = append(byClient[c.Client], c.Ranges...)
			}
		}
	}
	out := make(DeleteSet, 0, len(byClient))
	for c, rs := range byClient {
		slices.SortStableFunc(rs, func(a, b Range) int {
			switch {
			case a.Clock < b.Clock:
				return -1
			case a.Clock > b.Clock:
				return 1
			}
			return 0
		})
		j := 1
		for i := 1; i < len(rs); i++ {
			l, r := rs[j-1], rs[i]
			if l.Clock+l.Len >= r.Clock {
				rs[j-1] = Range{l.Clock, max(l.Len, r.Clock+r.Len-l.Clock)}
			} else {
				rs[j] = r
				j++
			}
		}
		out = append(out, ClientDeletes{c, rs[:j]})
	}
	sortClientsDesc(out)
	return out
}

// normalizeDeleteSet is Yjs's readDeleteSet followed by writeDeleteSet:
// clients without ranges dropped, a client listed twice joined, clients in
// descending order, ranges as they were.
func normalizeDeleteSet(ds DeleteSet) DeleteSet {
	byClient := map[uint64][]Range{}
	for _, c := range ds {
		if len(c.Ranges) > 0 {
			byClient[c.Client] = append(byClient[c.Client], c.Ranges...)
		}
	}
	out := make(DeleteSet, 0, len(byClient))
	for c, rs := range byClient {
		out = append(out, ClientDeletes{c, rs})
	}
	sortClientsDesc(out)
	return out
}

func sortClientsDesc(ds DeleteSet) {
	slices.SortFunc(ds, func(a, b ClientDeletes) int {
		switch {
		case a.Client > b.Client:
			return -1
		case a.Client < b.Client:
			return 1
		}
		return 0
	})
}
