// Package stripejson reads the few fields Tollgate needs of a Stripe payload on the streaming
// decoder of github.com/go-json-experiment/json (jsontext, the basis of encoding/json/v2). One
// pass over the bytes validates all of them, as json.Valid would, and decodes only the members
// asked for; every other value is skipped without building anything.
//
// It accepts what encoding/json accepts: duplicate member names (the last one read wins, as
// each is handed to the caller in order) and invalid UTF-8, which strings read as U+FFFD.
// On input that is not JSON it returns an error; it never panics.
package stripejson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrSyntax is wrapped by the errors of input that is not JSON (json.Valid is false), and by no
// other error.
var ErrSyntax = errors.New("malformed JSON")

// Decoder reads one JSON document held in memory. Offsets (InputOffset) index that memory.
type Decoder = jsontext.Decoder

// reader is a decoder with the buffer it reads, reused across documents: a decoder is the
// larger part of the memory a read allocates.
type reader struct {
	buf bytes.Buffer
	dec jsontext.Decoder
}

// readers are the idle readers. A pool is shared state, but holds nothing a caller can observe.
var readers = sync.Pool{New: func() any { return new(reader) }} //nolint:gochecknoglobals // a cache of scratch values

// Read reads doc, which must be one JSON value and nothing else, with fn, which must consume
// exactly that value. The error wraps ErrSyntax when doc is not JSON, even if fn refused a value
// before the malformed part; otherwise it is fn's. Read is safe for concurrent use; dec must not
// be kept past fn.
func Read(doc []byte, fn func(dec *Decoder) error) error {
	r, _ := readers.Get().(*reader) // the pool holds only *reader (New makes them)
	defer func() {
		r.buf = bytes.Buffer{}
		r.dec.Reset(&r.buf) // drops its reference to doc
		readers.Put(r)
	}()
	// A *bytes.Buffer is read in place, without a copy into the decoder's own buffer.
	r.buf = *bytes.NewBuffer(doc)
	dec := &r.dec
	dec.Reset(&r.buf, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	err := fn(dec)
	if isSyntax(err) {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	// When fn refused a value, the rest of doc is still read, so that malformed JSON is always
	// reported as such, whatever came first.
	if rest := finish(dec); rest != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, rest)
	}
	return err
}

// finish reads the rest of the top-level value the decoder is in, then checks that nothing
// but white space follows it (jsontext reads a stream of values; a document is one).
func finish(dec *Decoder) error {
	for dec.StackDepth() > 0 {
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
	}
	switch _, err := dec.ReadToken(); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return &jsontext.SyntacticError{ByteOffset: dec.InputOffset(), Err: errors.New("data after the top-level value")}
	default:
		return err
	}
}

func isSyntax(err error) bool {
	var syntax *jsontext.SyntacticError
	return errors.As(err, &syntax) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Object reads doc, which must be one JSON object (or null: no members) and nothing else, and
// calls fn with the decoder positioned at the value of each member, in order (see Members).
func Object(doc []byte, fn func(dec *Decoder, key []byte) error) error {
	return Read(doc, func(dec *Decoder) error {
		return Members(dec, func(key []byte) error { return fn(dec, key) })
	})
}

// Members reads the object (or null: no members) at the decoder's position and calls fn with
// the name of each member, unescaped, in order. fn must read or skip (dec.SkipValue) exactly the
// member's value; key is valid only during the call.
func Members(dec *Decoder, fn func(key []byte) error) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return fmt.Errorf("object expected, got %v", tok.Kind())
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		key := []byte(name[1 : len(name)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			key, _ = jsontext.AppendUnquote(nil, name) // only invalid UTF-8 can fail, and it reads as U+FFFD
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	_, err = dec.ReadToken() // '}', or the syntax error where it should be
	return err
}

// Elements reads the array (or null: no elements) at the decoder's position and calls fn for each
// element; fn must read or skip exactly that element.
func Elements(dec *Decoder, fn func() error) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '[':
	default:
		return fmt.Errorf("array expected, got %v", tok.Kind())
	}
	for dec.PeekKind() != ']' && dec.PeekKind() != 0 {
		if err := fn(); err != nil {
			return err
		}
	}
	_, err = dec.ReadToken()
	return err
}

// Span reads the value at the decoder's position with read (which must consume exactly that
// value) and returns the value's bytes, a subslice of doc, the document the decoder reads.
func Span(dec *Decoder, doc []byte, read func() error) ([]byte, error) {
	start := dec.InputOffset() // just past the member name: the ':' and spaces come first
	if err := read(); err != nil {
		return nil, err
	}
	return bytes.TrimLeft(doc[start:dec.InputOffset()], " \t\r\n:"), nil
}

// IsNull reports whether the next value is null.
func IsNull(dec *Decoder) bool { return dec.PeekKind() == 'n' }

// String reads a string, or null ("").
func String(dec *Decoder) (string, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return "", err
	}
	switch v.Kind() {
	case 'n':
		return "", nil
	case '"':
	default:
		return "", fmt.Errorf("string expected, got %.40s", v)
	}
	if s := v[1 : len(v)-1]; plain(s) {
		return string(s), nil
	}
	b, _ := jsontext.AppendUnquote(nil, v) // only invalid UTF-8 can fail, and it reads as U+FFFD
	return string(b), nil
}

// Int reads an integer (a Unix timestamp), or null (0). A fraction, an exponent or a number
// beyond int64 is an error.
func Int(dec *Decoder) (int64, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return 0, err
	}
	switch v.Kind() {
	case 'n':
		return 0, nil
	case '0':
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("integer expected, got %.40s", v)
}

// Bool reads true, false, or null (false).
func Bool(dec *Decoder) (bool, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return false, err
	}
	switch v.Kind() {
	case 't':
		return true, nil
	case 'f', 'n':
		return false, nil
	}
	return false, fmt.Errorf("boolean expected, got %.40s", v)
}

// Ref reads a Stripe reference: an id string, an expanded object with an "id", or null ("").
// Anything else is an error.
func Ref(dec *Decoder) (string, error) {
	switch dec.PeekKind() {
	case '{':
		var id string
		err := Members(dec, func(key []byte) error {
			if string(key) != "id" {
				return dec.SkipValue()
			}
			var err error
			id, err = String(dec)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("expanded reference: %w", err)
		}
		return id, nil
	case '"', 'n':
		return String(dec)
	}
	v, err := dec.ReadValue()
	if err != nil {
		return "", err
	}
	return "", fmt.Errorf("reference is neither an id nor an object: %.40s", v)
}

// plain reports whether the contents of a JSON string are its value as they stand: ASCII
// without escapes (every Stripe id and status).
func plain(s []byte) bool {
	for _, c := range s {
		if c >= 0x80 || c == '\\' {
			return false
		}
	}
	return true
}
