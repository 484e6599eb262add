package yupdate

import (
	"fmt"
	"slices"
)

// GC garbage-collects a Yjs v1 update, doing without a document what a
// Y.Doc with gc:true does to deleted content (Yjs's tryGc at the end of a
// transaction). It is meant for a merged update, such as a server's
// compacted snapshot (MergeUpdates, then GC):
//
//   - the content of an item in the delete set becomes ContentDeleted of
//     the same length; the item stays, so that inserts made next to it by
//     clients that never saw the collection still find their place;
//   - an item whose parent type is deleted (or itself collected) becomes a
//     GC range, recursively, so a deleted type takes its children, nested
//     types and map entries with it. The parent is the one the item names,
//     or the one of the item its origin (or right origin) points to,
//     resolved through the update itself; an item whose origin, right
//     origin or parent is a GC range becomes one too, as Yjs integrates
//     it. An item whose parent cannot be resolved that way (it refers to
//     a clock the update lacks, or to an item that does: Yjs keeps both
//     pending) does not become a GC range, though its deleted content
//     still becomes ContentDeleted (Yjs does that to any deleted item);
//   - adjacent GC ranges of a client join, and so do adjacent items that
//     Yjs's Item.mergeWith would join (same client, consecutive clocks, the
//     right one's origin the left one's last unit, the same right origin,
//     the same kind of mergeable content), live or deleted.
//
// The delete set is kept as it is (sorted and joined per client). The
// result loads in Yjs to the same document as the input, and updates made
// by clients that saw the uncollected document apply to it as they would
// to a collected Y.Doc. GC does not merge updates and keeps the input's
// order of structs (the input read as Y.applyUpdate reads it: see
// Canonical); apps that keep gc:false snapshots (for version history)
// must not call it. Malformed input returns an error wrapping ErrMalformed.
func GC(update []byte) ([]byte, error) {
	structs, ds, err := decodeForMerge(update, false)
	if err != nil {
		return nil, fmt.Errorf("yupdate: GC: %w", err)
	}
	g, err := newCollector(structs, mergeDeleteSets([]DeleteSet{ds}))
	if err != nil {
		return nil, fmt.Errorf("yupdate: GC: %w", err)
	}
	return g.collect(), nil
}

// Whether an item sits in a collected type, as computed by collector.inGC.
const (
	ctxUnknown  uint8 = iota // not computed yet
	ctxVisiting              // on the current chain (a cycle means malformed input)
	ctxLive                  // parent live: keep the item
	ctxPending               // refers to what the update lacks (Yjs keeps it pending), or to such an item: keep it
	ctxGC                    // parent deleted or collected: the item becomes a GC range
)

// collector holds an update's structs indexed by ID and its delete set.
type collector struct {
	structs  []Struct
	byClient map[uint64][]int32 // indices into structs, by clock
	deletes  map[uint64][]Range // sorted, disjoint
	ds       DeleteSet
	ctx      []uint8
}

func newCollector(structs []Struct, ds DeleteSet) (*collector, error) {
	if len(structs) > 1<<31-1 {
		return nil, errLengthTooLarge
	}
	g := &collector{
		structs:  structs,
		byClient: map[uint64][]int32{},
		deletes:  make(map[uint64][]Range, len(ds)),
		ds:       ds,
		ctx:      make([]uint8, len(structs)),
	}
	for _, c := range ds {
		g.deletes[c.Client] = c.Ranges
	}
	for i := range structs {
		c := structs[i].ID.Client
		g.byClient[c] = append(g.byClient[c], int32(i))
	}
	// decodeForMerge leaves one group per client, so a client's structs
	// are in clock order and do not overlap; sort and check anyway, since
	// the collector's lookups depend on it.
	for _, idx := range g.byClient {
		if !slices.IsSortedFunc(idx, g.cmpClock) {
			slices.SortStableFunc(idx, g.cmpClock)
		}
		for k := 1; k < len(idx); k++ {
			if structs[idx[k-1]].End() > structs[idx[k]].ID.Clock {
				return nil, errInconsistent
			}
		}
	}
	return g, nil
}

func (g *collector) cmpClock(a, b int32) int {
	ca, cb := g.structs[a].ID.Clock, g.structs[b].ID.Clock
	switch {
	case ca < cb:
		return -1
	case ca > cb:
		return 1
	}
	return 0
}

// find returns the index of the struct holding id, or -1.
func (g *collector) find(id ID) int {
	idx := g.byClient[id.Client]
	k, _ := slices.BinarySearchFunc(idx, id.Clock, func(i int32, clock uint64) int {
		s := &g.structs[i]
		switch {
		case s.End() <= clock:
			return -1
		case s.ID.Clock > clock:
			return 1
		}
		return 0
	})
	if k < len(idx) {
		if s := &g.structs[idx[k]]; s.ID.Clock <= id.Clock && id.Clock < s.End() {
			return int(idx[k])
		}
	}
	return -1
}

// isDeleted tells whether the delete set holds id.
func (g *collector) isDeleted(id ID) bool {
	rs := g.deletes[id.Client]
	k, found := slices.BinarySearchFunc(rs, id.Clock, func(r Range, clock uint64) int {
		switch {
		case r.Clock+r.Len <= clock:
			return -1
		case r.Clock > clock:
			return 1
		}
		return 0
	})
	return found && k < len(rs)
}

// refs resolves what Yjs's Item.getMissing resolves for item i: final is
// set when the answer follows from i alone; otherwise it depends on items
// dep1 and dep2 (when >= 0), and nbGC says that a neighbour is a GC range.
// It mirrors getMissing: a reference the update lacks leaves the item
// pending; an origin or right origin in a GC range drops the parent (the
// item is integrated as GC); a named parent that is a GC range, or a
// deleted item (whose content Yjs has collected, so it is no type), does
// the same; an implied parent is the origin's, else the right origin's.
// Both neighbours count: in an update Yjs wrote they share the item's
// parent, and where a malformed one says otherwise, a neighbour this
// collects into a GC range would make Yjs collect the item anyway.
func (g *collector) refs(i int) (dep1, dep2 int, nbGC bool, final uint8) {
	s := &g.structs[i]
	if !s.HasOrigin && !s.HasRightOrigin {
		if s.Parent != ParentItem {
			return -1, -1, false, ctxLive // a root type is never deleted
		}
		p := g.find(s.ParentID)
		if p < 0 || g.structs[p].Kind == KindSkip {
			return -1, -1, false, ctxPending
		}
		ps := &g.structs[p]
		if ps.Kind == KindGC || g.deletedItem(ps, s.ParentID) {
			return -1, -1, false, ctxGC
		}
		return p, -1, false, ctxUnknown
	}
	deps := [2]int{-1, -1}
	for k, ref := range [2]struct {
		has bool
		id  ID
	}{{s.HasOrigin, s.Origin}, {s.HasRightOrigin, s.RightOrigin}} {
		if !ref.has {
			continue
		}
		d := g.find(ref.id)
		switch {
		case d < 0 || g.structs[d].Kind == KindSkip:
			return -1, -1, false, ctxPending
		case g.structs[d].Kind == KindGC:
			nbGC = true
		default:
			deps[k] = d
		}
	}
	if nbGC && deps[0] < 0 && deps[1] < 0 {
		return -1, -1, false, ctxGC
	}
	return deps[0], deps[1], nbGC, ctxUnknown
}

// deletedItem tells whether the unit id of item s is deleted.
func (g *collector) deletedItem(s *Struct, id ID) bool {
	if _, ok := s.Content.(ContentDeleted); ok {
		return true
	}
	return g.isDeleted(id)
}

// inGC tells whether item i sits in a deleted or collected type. The
// chains it follows (origin after origin, parent after parent) can be as
// long as the update, so it walks them depth first with an explicit stack
// and remembers every answer.
func (g *collector) inGC(i int, stack []int) ([]int, bool) {
	stack = append(stack[:0], i)
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		if g.ctx[j] >= ctxLive {
			stack = stack[:len(stack)-1]
			continue
		}
		dep1, dep2, nbGC, final := g.refs(j)
		if final != ctxUnknown {
			g.ctx[j] = final
			stack = stack[:len(stack)-1]
			continue
		}
		if g.ctx[j] == ctxUnknown {
			// First visit: resolve the dependencies first. One met
			// again while visiting is a cycle, which no document
			// makes: it counts as live, so its items stay as they are.
			g.ctx[j] = ctxVisiting
			for _, d := range [2]int{dep1, dep2} {
				if d >= 0 && g.ctx[d] == ctxUnknown {
					stack = append(stack, d)
				}
			}
			continue
		}
		// What it refers to decides: pending before a GC neighbour (Yjs
		// does not integrate an item whose neighbour it lacks), then a
		// GC neighbour or parent.
		switch {
		case (dep1 >= 0 && g.ctx[dep1] == ctxPending) || (dep2 >= 0 && g.ctx[dep2] == ctxPending):
			g.ctx[j] = ctxPending
		case nbGC, (dep1 >= 0 && g.ctx[dep1] == ctxGC), (dep2 >= 0 && g.ctx[dep2] == ctxGC):
			g.ctx[j] = ctxGC
		default:
			g.ctx[j] = ctxLive
		}
		stack = stack[:len(stack)-1]
	}
	return stack, g.ctx[i] == ctxGC
}

// collect writes the collected update.
func (g *collector) collect() []byte {
	var w gcWriter
	var stack []int
	for i := range g.structs {
		s := &g.structs[i]
		if s.Kind != KindItem {
			w.add(*s)
			continue
		}
		var gc bool
		stack, gc = g.inGC(i, stack)
		if gc {
			w.add(Struct{Kind: KindGC, ID: s.ID, Length: s.Length})
			continue
		}
		g.collectDeleted(s, &w)
	}
	return w.finish(g.ds)
}

// collectDeleted writes item s with the parts the delete set holds as
// ContentDeleted, split where the delete set starts or ends inside it (the
// right part of a split has the left part's last unit as origin, as when
// Yjs splits an item).
func (g *collector) collectDeleted(s *Struct, w *gcWriter) {
	if _, ok := s.Content.(ContentDeleted); ok || s.Length == 0 {
		w.add(*s)
		return
	}
	rs := g.deletes[s.ID.Client]
	// The first range ending after the item's start.
	k, _ := slices.BinarySearchFunc(rs, s.ID.Clock, func(r Range, clock uint64) int {
		if r.Clock+r.Len <= clock {
			return -1
		}
		return 1
	})
	pos := s.ID.Clock // the next clock of s to write
	piece := func(end uint64, deleted bool) {
		if end == pos {
			return // an empty delete range
		}
		p := *s
		if off := pos - s.ID.Clock; off > 0 {
			p = sliceStruct(p, off)
		}
		if n := end - pos; n < p.Length {
			p.Content = headContent(p.Content, n)
			p.Length = n
		}
		if deleted {
			p.Content = ContentDeleted{p.Length}
		}
		w.add(p)
		pos = end
	}
	for ; k < len(rs) && rs[k].Clock < s.End(); k++ {
		start, end := max(rs[k].Clock, pos), min(rs[k].Clock+rs[k].Len, s.End())
		if start > pos {
			piece(start, false)
		}
		piece(end, true)
	}
	if pos < s.End() {
		piece(s.End(), false)
	}
}

// headContent returns the first n units of splittable content c (0 < n <
// c.Len()).
func headContent(c Content, n uint64) Content {
	switch c := c.(type) {
	case ContentString:
		l, _ := splitUTF16(c.Str, n)
		return ContentString{l}
	case ContentJSON:
		return ContentJSON{c.Values[:n:n]}
	case ContentAny:
		return ContentAny{c.Values[:n:n]}
	case ContentDeleted:
		return ContentDeleted{n}
	}
	return c
}

// gcWriter encodes structs, joining each with the one before it where Yjs
// would. Joined content is gathered in buffers and built once per run, so
// that a run of n keystrokes costs O(n), not O(n²).
type gcWriter struct {
	e      encoder
	cur    Struct
	has    bool
	joined bool // cur's content is in str, anys or jsons
	str    []byte
	anys   []RawAny
	jsons  []string
}

func (w *gcWriter) add(s Struct) {
	if w.has && w.join(&s) {
		return
	}
	w.flush()
	w.cur, w.has = s, true
}

// join appends s to the current struct when Yjs's mergeWith would (GC.
// mergeWith for GC ranges; Item.mergeWith for items, whose conditions on
// integrated neighbours reduce, in an update, to s's origin being cur's
// last unit and both having the same right origin: a split of the joined
// item gives s back).
func (w *gcWriter) join(s *Struct) bool {
	c := &w.cur
	if c.ID.Client != s.ID.Client || c.End() != s.ID.Clock || c.Kind != s.Kind {
		return false
	}
	switch c.Kind {
	case KindGC:
		c.Length += s.Length
		return true
	case KindSkip:
		return false
	}
	if c.Length == 0 || s.Length == 0 || !s.HasOrigin || s.Origin != (ID{c.ID.Client, c.End() - 1}) ||
		c.HasRightOrigin != s.HasRightOrigin || (c.HasRightOrigin && c.RightOrigin != s.RightOrigin) {
		return false
	}
	switch sc := s.Content.(type) {
	case ContentDeleted:
		cc, ok := c.Content.(ContentDeleted)
		if !ok {
			return false
		}
		c.Content = ContentDeleted{cc.Length + sc.Length}
	case ContentString:
		cc, ok := c.Content.(ContentString)
		if !ok {
			return false
		}
		if !w.joined {
			w.str = append(w.str[:0], cc.Str...)
		}
		w.str = append(w.str, sc.Str...)
	case ContentAny:
		cc, ok := c.Content.(ContentAny)
		if !ok {
			return false
		}
		if !w.joined {
			w.anys = append([]RawAny(nil), cc.Values...)
		}
		w.anys = append(w.anys, sc.Values...)
	case ContentJSON:
		cc, ok := c.Content.(ContentJSON)
		if !ok {
			return false
		}
		if !w.joined {
			w.jsons = append([]string(nil), cc.Values...)
		}
		w.jsons = append(w.jsons, sc.Values...)
	default:
		return false
	}
	if _, ok := s.Content.(ContentDeleted); !ok {
		w.joined = true
	}
	c.Length += s.Length
	return true
}

func (w *gcWriter) flush() {
	if !w.has {
		return
	}
	if w.joined {
		switch w.cur.Content.(type) {
		case ContentString:
			w.cur.Content = ContentString{string(w.str)}
		case ContentAny:
			w.cur.Content = ContentAny{w.anys}
			w.anys = nil
		case ContentJSON:
			w.cur.Content = ContentJSON{w.jsons}
			w.jsons = nil
		}
		w.joined = false
	}
	w.e.add(&w.cur, 0)
	w.has = false
}

func (w *gcWriter) finish(ds DeleteSet) []byte {
	w.flush()
	return w.e.finish(ds)
}
