package yupdate

import "slices"

// The canonical layout of an update is the one Yjs writes: one group of
// structs per client, clients in descending order, and a delete set with
// clients in descending order, each with its ranges sorted, non-empty and
// neither overlapping nor touching. Yjs's reader (Y.applyUpdate) accepts
// more: groups in any order (it sorts the clients itself), a client
// listed twice (it keeps one group per client in a map, so the last group
// listed replaces the earlier ones) and a delete set in any order (each
// range is applied on its own). The merge and the collector rely on the
// canonical layout — a merge would write a client listed twice twice, and
// a document whose structs overlap no longer compacts — so every function
// here reads an update as Y.applyUpdate does and brings it into that
// layout first. A server that stores or relays updates calls
// DecodeCanonical on what it receives, so that it keeps and sends on only
// what Yjs itself writes.

// groupSpan is one client group of a decoded update: the client and the
// indices of its structs in the decoded slice.
type groupSpan struct {
	client     uint64
	start, end int
}

// closeSpans sets each group's end, the next one's start (n for the last).
func closeSpans(groups []groupSpan, n int) []groupSpan {
	for i := range groups {
		groups[i].end = n
		if i+1 < len(groups) {
			groups[i].end = groups[i+1].start
		}
	}
	return groups
}

// groupsCanonical tells whether each client has one group, in descending
// order of clients.
func groupsCanonical(groups []groupSpan) bool {
	for i := 1; i < len(groups); i++ {
		if groups[i].client >= groups[i-1].client {
			return false
		}
	}
	return true
}

// canonicalStructs returns structs, whose client groups are groups, as
// Y.applyUpdate reads them: each client's last group only, clients in
// descending order.
func canonicalStructs(structs []Struct, groups []groupSpan) []Struct {
	last := make(map[uint64]int, len(groups))
	for i, g := range groups {
		last[g.client] = i
	}
	keep := make([]groupSpan, 0, len(last))
	n := 0
	for i, g := range groups {
		if last[g.client] == i {
			keep = append(keep, g)
			n += g.end - g.start
		}
	}
	slices.SortFunc(keep, func(a, b groupSpan) int {
		if a.client > b.client {
			return -1
		}
		return 1 // clients are distinct
	})
	out := make([]Struct, 0, n)
	for _, g := range keep {
		out = append(out, structs[g.start:g.end]...)
	}
	return out
}

// deleteSetCanonical tells whether ds is laid out as Yjs writes delete
// sets.
func deleteSetCanonical(ds DeleteSet) bool {
	for i, c := range ds {
		if len(c.Ranges) == 0 || (i > 0 && c.Client >= ds[i-1].Client) {
			return false
		}
		for j, r := range c.Ranges {
			if r.Len == 0 || (j > 0 && c.Ranges[j-1].Clock+c.Ranges[j-1].Len >= r.Clock) {
				return false
			}
		}
	}
	return true
}

// canonicalDeleteSet returns ds laid out as Yjs writes delete sets. It
// deletes what ds deletes: empty ranges delete nothing, and the others
// are joined where they overlap or touch.
func canonicalDeleteSet(ds DeleteSet) DeleteSet {
	kept := make(DeleteSet, 0, len(ds))
	for _, c := range ds {
		rs := make([]Range, 0, len(c.Ranges))
		for _, r := range c.Ranges {
			if r.Len > 0 {
				rs = append(rs, r)
			}
		}
		kept = append(kept, ClientDeletes{c.Client, rs})
	}
	return mergeDeleteSets([]DeleteSet{kept})
}

// DecodeCanonical decodes a Yjs v1 update as Y.applyUpdate reads it and
// returns it in the layout Yjs writes (see Canonical); canonical reports
// whether update was in that layout already, in which case u is what
// Decode returns. Otherwise u.Encode() is the canonical update, which
// loads in Yjs to the same document as update.
func DecodeCanonical(update []byte) (u *Update, canonical bool, err error) {
	var buf [4]groupSpan
	u, groups, err := decode(update, buf[:0])
	if err != nil {
		return nil, false, err
	}
	canonical = true
	if !groupsCanonical(groups) {
		u.Structs = canonicalStructs(u.Structs, groups)
		canonical = false
	}
	if !deleteSetCanonical(u.DeleteSet) {
		u.DeleteSet = canonicalDeleteSet(u.DeleteSet)
		canonical = false
	}
	return u, canonical, nil
}

// Canonical returns a Yjs v1 update in the layout Yjs writes: one group of
// structs per client, clients in descending order, and a sorted delete
// set whose ranges neither overlap nor touch. Where update lists a client
// twice, its last group is kept, as Y.applyUpdate keeps it; the result
// loads to the same document as update. An update in that layout already
// is returned as it is.
func Canonical(update []byte) ([]byte, error) {
	u, canonical, err := DecodeCanonical(update)
	if err != nil {
		return nil, err
	}
	if canonical {
		return update, nil
	}
	return u.Encode(), nil
}
