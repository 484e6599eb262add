// Package yupdate reads and writes Yjs v1 updates and does, without a
// document and without a JavaScript runtime, what Yjs does for servers
// that keep no Y.Doc: merge updates (MergeUpdates, Yjs's mergeUpdates),
// compute an update's state vector (EncodeStateVectorFromUpdate,
// encodeStateVectorFromUpdate) and compute the part of an update a peer
// lacks (DiffUpdate, diffUpdate). GC garbage-collects an update as a
// gc:true Y.Doc collects itself.
//
// The results are those of Yjs 13.6 byte for byte: the tests compare them
// with Yjs itself on random editing sessions (text with emoji and
// formatting, maps, arrays, nested and XML types, subdocuments, 53-bit
// client ids). Merges differ in bytes only where Yjs's own order is
// unspecified (a few in a thousand random merges), and then load to the
// same document.
//
// Decode and Update.Encode give the structs (items, GC ranges, skips) and
// the delete set of an update; for an update Yjs produced, Encode returns
// the input byte for byte. Text lengths and splits count UTF-16 code units
// as JavaScript does; a split through a surrogate pair leaves U+FFFD on
// both sides, as in Yjs. Item content keeps its encoded form where Yjs
// would re-encode a value (JSON texts, lib0 "any" values as RawAny), so
// nothing is lost or reordered in transit.
//
// Every function returns an error wrapping ErrMalformed on bad input and
// never panics; length prefixes are checked against the input left, so a
// hostile update cannot make the decoder allocate more than a small
// multiple of its own size. Decode's results alias the input's bytes
// (ContentBinary, RawAny): do not modify the input while using them.
//
// Layout: Yjs writes an update with one group of structs per client,
// clients in descending order, and a sorted delete set; Y.applyUpdate
// reads more (clients in any order, a client listed twice, whose last
// group wins, a delete set in any order). Every function here reads an
// update as Y.applyUpdate does, and Canonical (or DecodeCanonical) gives
// the update in Yjs's layout, so that a server stores and relays only
// what Yjs writes: one hostile update cannot make a stored document
// unmergeable. Updates that overlap (the same update twice, an update and
// a state holding it) merge to their union.
//
// Compaction: a server that stores a document as updates compacts them
// with MergeUpdates and then GC. MergeUpdates alone keeps every deleted
// character's content (a Y.Doc with gc:true keeps only its length); GC
// drops it, turning deleted content into ContentDeleted and the contents of
// deleted types into GC ranges, so that the snapshot is about the size of
// the gc:true Y.Doc's encodeStateAsUpdate, and clients that saw the
// uncollected document still sync with it. GC is separate from
// MergeUpdates because apps that keep gc:false documents (for version
// history or snapshots of past states) need the deleted content: they
// merge without collecting.
//
// What it does not do: it has no document model (no integration of
// structs, no conflict resolution, no toJSON), and reads and writes the v1
// encoding only (not Yjs's v2 update format).
package yupdate
