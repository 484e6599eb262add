package yupdate

import (
	"encoding/json"
	"unicode/utf8"
)

// Content is an item's content. Its concrete type is one of ContentDeleted,
// ContentJSON, ContentBinary, ContentString, ContentEmbed, ContentFormat,
// ContentType, ContentAny and ContentDoc.
type Content interface {
	// Ref is the content type number, the info byte's low 5 bits.
	Ref() uint8
	// Len is the number of clock units the content takes.
	Len() uint64
	// appendTo writes the content from offset on (offset > 0 only for
	// the splittable types).
	appendTo(b []byte, offset uint64) []byte
	// splitAt returns the content's units from offset on (the caller
	// ensures 0 < offset < Len, for splittable types only).
	splitAt(offset uint64) Content
}

// ContentDeleted is deleted content that keeps only its length (type 1).
type ContentDeleted struct{ Length uint64 }

// ContentJSON is legacy JSON content (type 2): each element is one JSON
// text, or "undefined", as Yjs wrote it. One unit per element.
type ContentJSON struct{ Values []string }

// ContentBinary is a byte array (type 3), one unit.
type ContentBinary struct{ Data []byte }

// ContentString is text (type 4) in UTF-8. Its length, and every split
// of it, counts UTF-16 code units, as Yjs does in JavaScript.
type ContentString struct{ Str string }

// ContentEmbed is an embed in text (type 5): one JSON text, one unit.
type ContentEmbed struct{ JSON string }

// ContentFormat is a formatting attribute in text (type 6): a key and a
// JSON text value ("null" ends the range), one unit.
type ContentFormat struct {
	Key   string
	Value string
}

// Shared type references of ContentType.
const (
	TypeArray       = 0
	TypeMap         = 1
	TypeText        = 2
	TypeXMLElement  = 3
	TypeXMLFragment = 4
	TypeXMLHook     = 5
	TypeXMLText     = 6
)

// ContentType creates a nested shared type (type 7), one unit. Name is
// the node name of an XML element or the hook name of an XML hook.
type ContentType struct {
	TypeRef uint8
	Name    string
}

// ContentAny holds JSON-like values (type 8), one unit per value. Each
// value is kept in its lib0 encoding; RawAny.Decode turns it into Go
// values.
type ContentAny struct{ Values []RawAny }

// ContentDoc is a subdocument (type 9): its guid and options, one unit.
type ContentDoc struct {
	GUID string
	Opts RawAny
}

func (ContentDeleted) Ref() uint8 { return 1 }
func (ContentJSON) Ref() uint8    { return 2 }
func (ContentBinary) Ref() uint8  { return 3 }
func (ContentString) Ref() uint8  { return 4 }
func (ContentEmbed) Ref() uint8   { return 5 }
func (ContentFormat) Ref() uint8  { return 6 }
func (ContentType) Ref() uint8    { return 7 }
func (ContentAny) Ref() uint8     { return 8 }
func (ContentDoc) Ref() uint8     { return 9 }

func (c ContentDeleted) Len() uint64 { return c.Length }
func (c ContentJSON) Len() uint64    { return uint64(len(c.Values)) }
func (ContentBinary) Len() uint64    { return 1 }
func (c ContentString) Len() uint64  { return utf16Len(c.Str) }
func (ContentEmbed) Len() uint64     { return 1 }
func (ContentFormat) Len() uint64    { return 1 }
func (ContentType) Len() uint64      { return 1 }
func (c ContentAny) Len() uint64     { return uint64(len(c.Values)) }
func (ContentDoc) Len() uint64       { return 1 }

// utf16Len counts the UTF-16 code units of a valid UTF-8 string.
func utf16Len(s string) uint64 {
	n := uint64(0)
	for i := 0; i < len(s); {
		b := s[i]
		switch {
		case b < 0x80:
			i++
		case b < 0xe0:
			i += 2
		case b < 0xf0:
			i += 3
		default:
			i += 4
			n++ // a surrogate pair
		}
		n++
	}
	return n
}

// splitUTF16 splits s at UTF-16 offset off. When off falls inside a
// surrogate pair, both halves get U+FFFD in place of the broken half, as
// Yjs does.
func splitUTF16(s string, off uint64) (left, right string) {
	n := uint64(0)
	for i := 0; i < len(s); {
		if n == off {
			return s[:i], s[i:]
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x10000 {
			if n+1 == off {
				return s[:i] + "\uFFFD", "\uFFFD" + s[i+size:]
			}
			n += 2
		} else {
			n++
		}
		i += size
	}
	return s, ""
}

func (c ContentDeleted) appendTo(b []byte, off uint64) []byte {
	return appendUvarint(b, c.Length-off)
}

func (c ContentJSON) appendTo(b []byte, off uint64) []byte {
	b = appendUvarint(b, uint64(len(c.Values))-off)
	for _, v := range c.Values[off:] {
		b = appendString(b, v)
	}
	return b
}

func (c ContentBinary) appendTo(b []byte, _ uint64) []byte { return appendBytes(b, c.Data) }

func (c ContentString) appendTo(b []byte, off uint64) []byte {
	if off == 0 {
		return appendString(b, c.Str)
	}
	_, r := splitUTF16(c.Str, off)
	return appendString(b, r)
}

func (c ContentEmbed) appendTo(b []byte, _ uint64) []byte { return appendString(b, c.JSON) }

func (c ContentFormat) appendTo(b []byte, _ uint64) []byte {
	b = appendString(b, c.Key)
	return appendString(b, c.Value)
}

func (c ContentType) appendTo(b []byte, _ uint64) []byte {
	b = appendUvarint(b, uint64(c.TypeRef))
	if c.TypeRef == TypeXMLElement || c.TypeRef == TypeXMLHook {
		b = appendString(b, c.Name)
	}
	return b
}

func (c ContentAny) appendTo(b []byte, off uint64) []byte {
	b = appendUvarint(b, uint64(len(c.Values))-off)
	for _, v := range c.Values[off:] {
		b = append(b, v...)
	}
	return b
}

func (c ContentDoc) appendTo(b []byte, _ uint64) []byte {
	b = appendString(b, c.GUID)
	return append(b, c.Opts...)
}

func (c ContentDeleted) splitAt(off uint64) Content { return ContentDeleted{c.Length - off} }
func (c ContentJSON) splitAt(off uint64) Content    { return ContentJSON{c.Values[off:]} }
func (c ContentString) splitAt(off uint64) Content {
	_, r := splitUTF16(c.Str, off)
	return ContentString{r}
}
func (c ContentAny) splitAt(off uint64) Content { return ContentAny{c.Values[off:]} }
func (c ContentBinary) splitAt(uint64) Content  { return c }
func (c ContentEmbed) splitAt(uint64) Content   { return c }
func (c ContentFormat) splitAt(uint64) Content  { return c }
func (c ContentType) splitAt(uint64) Content    { return c }
func (c ContentDoc) splitAt(uint64) Content     { return c }

// SplitString splits text at a UTF-16 offset the way Yjs splits a string
// item: a surrogate pair cut in two becomes U+FFFD on both sides.
func SplitString(s string, utf16Offset uint64) (left, right string) {
	return splitUTF16(s, utf16Offset)
}

func decodeContent(r *reader, ref uint8) (Content, error) {
	switch ref {
	case 1:
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		return ContentDeleted{n}, nil
	case 2:
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		vs := make([]string, 0, min(n, uint64(r.remaining())))
		for i := uint64(0); i < n; i++ {
			s, err := r.string()
			if err != nil {
				return nil, err
			}
			// Yjs writes undefined as the word, and parses the rest.
			if s != "undefined" && !json.Valid([]byte(s)) {
				return nil, errInvalidJSON
			}
			vs = append(vs, s)
		}
		return ContentJSON{vs}, nil
	case 3:
		b, err := r.bytes()
		if err != nil {
			return nil, err
		}
		return ContentBinary{b}, nil
	case 4:
		s, err := r.string()
		if err != nil {
			return nil, err
		}
		return ContentString{s}, nil
	case 5:
		s, err := r.string()
		if err != nil {
			return nil, err
		}
		if !json.Valid([]byte(s)) {
			return nil, errInvalidJSON
		}
		return ContentEmbed{s}, nil
	case 6:
		k, err := r.string()
		if err != nil {
			return nil, err
		}
		v, err := r.string()
		if err != nil {
			return nil, err
		}
		if !json.Valid([]byte(v)) {
			return nil, errInvalidJSON
		}
		return ContentFormat{k, v}, nil
	case 7:
		t, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		if t > TypeXMLText {
			return nil, errUnknownTypeRef
		}
		c := ContentType{TypeRef: uint8(t)}
		if t == TypeXMLElement || t == TypeXMLHook {
			if c.Name, err = r.string(); err != nil {
				return nil, err
			}
		}
		return c, nil
	case 8:
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		vs := make([]RawAny, 0, min(n, uint64(r.remaining())))
		for i := uint64(0); i < n; i++ {
			start := r.pos
			if err := r.skipAny(0); err != nil {
				return nil, err
			}
			vs = append(vs, RawAny(r.buf[start:r.pos:r.pos]))
		}
		return ContentAny{vs}, nil
	case 9:
		g, err := r.string()
		if err != nil {
			return nil, err
		}
		start := r.pos
		if err := r.skipAny(0); err != nil {
			return nil, err
		}
		return ContentDoc{g, RawAny(r.buf[start:r.pos:r.pos])}, nil
	}
	return nil, errUnknownContent
}
