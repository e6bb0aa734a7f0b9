// Package jsonscan is a small, non-validating reader for the few fields Tollgate reads of a Stripe
// payload. Input must already be valid JSON (json.Valid, or bytes that passed it before): it then
// finds where each value ends without building anything, which is many times faster than
// encoding/json on 5-8 KB Stripe objects. On input that is not JSON it returns an error or
// refuses a value of the wrong shape; it never panics.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Positions are indexes into d; a value starts at its first byte (no leading space). Each value
// is scanned once: a callback that descends into a value returns where that value ended.

// ErrSyntax is wrapped by the errors of input that is not JSON.
var ErrSyntax = errors.New("malformed JSON")

func IsSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func SkipSpace(d []byte, i int) int {
	for i < len(d) && IsSpace(d[i]) {
		i++
	}
	return i
}

// SkipString returns the index just past the string that starts at d[i] == '"'.
func SkipString(d []byte, i int) (int, error) {
	for j := i + 1; j < len(d); {
		k := bytes.IndexByte(d[j:], '"')
		if k < 0 {
			break
		}
		j += k
		b := j - 1
		for b > i && d[b] == '\\' {
			b--
		}
		if (j-1-b)%2 == 0 { // an even number of backslashes: the quote is not escaped
			return j + 1, nil
		}
		j++
	}
	return 0, fmt.Errorf("%w: unterminated string", ErrSyntax)
}

// SkipValue returns the index just past the value that starts at d[i].
func SkipValue(d []byte, i int) (int, error) {
	if i >= len(d) {
		return 0, fmt.Errorf("%w: Value expected", ErrSyntax)
	}
	switch d[i] {
	case '"':
		return SkipString(d, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(d); j++ {
			switch d[j] {
			case '"':
				end, err := SkipString(d, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("%w: unterminated object or array", ErrSyntax)
	default:
		j := i
		for j < len(d) && !IsSpace(d[j]) && d[j] != ',' && d[j] != '}' && d[j] != ']' {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("%w: Value expected at %q", ErrSyntax, d[i])
		}
		return j, nil
	}
}

// Value returns the value that starts at d[i] and the index just past it.
func Value(d []byte, i int) ([]byte, int, error) {
	end, err := SkipValue(d, i)
	if err != nil {
		return nil, 0, err
	}
	return d[i:end], end, nil
}

// NullAt reports whether the literal null starts at d[i].
func NullAt(d []byte, i int) bool { return len(d)-i >= 4 && string(d[i:i+4]) == "null" }

// IsNull reports whether v is absent or the literal null.
func IsNull(v []byte) bool { return len(v) == 0 || (len(v) == 4 && string(v) == "null") }

// Members calls fn with every member of the object that starts at d[i], in order, and returns the
// index just past the object; null counts as an empty object. fn gets the key (unquoted, unescaped
// if it has escapes) and the index of the member's value, and returns the index just past the
// value: SkipValue(d, i) for a value it does not read.
func Members(d []byte, i int, fn func(key []byte, i int) (int, error)) (int, error) {
	if NullAt(d, i) {
		return i + 4, nil
	}
	if i >= len(d) || d[i] != '{' {
		return 0, fmt.Errorf("%w: object expected", ErrSyntax)
	}
	i = SkipSpace(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return 0, fmt.Errorf("%w: object key expected", ErrSyntax)
		}
		end, err := SkipString(d, i)
		if err != nil {
			return 0, err
		}
		key := d[i+1 : end-1]
		if !Plain(key) {
			var s string
			if err := json.Unmarshal(d[i:end], &s); err != nil {
				return 0, fmt.Errorf("%w: object key: %w", ErrSyntax, err)
			}
			key = []byte(s)
		}
		i = SkipSpace(d, end)
		if i >= len(d) || d[i] != ':' {
			return 0, fmt.Errorf("%w: ':' expected after key %q", ErrSyntax, key)
		}
		if i, err = fn(key, SkipSpace(d, i+1)); err != nil {
			return 0, err
		}
		i = SkipSpace(d, i)
		if i < len(d) && d[i] == ',' {
			i = SkipSpace(d, i+1)
			continue
		}
		if i < len(d) && d[i] == '}' {
			return i + 1, nil
		}
		return 0, fmt.Errorf("%w: ',' or '}' expected", ErrSyntax)
	}
}

// Elements calls fn with the index of every element of the array that starts at d[i] and returns
// the index just past the array; null counts as an empty array. fn returns the index just past
// the element.
func Elements(d []byte, i int, fn func(i int) (int, error)) (int, error) {
	if NullAt(d, i) {
		return i + 4, nil
	}
	if i >= len(d) || d[i] != '[' {
		return 0, fmt.Errorf("%w: array expected", ErrSyntax)
	}
	i = SkipSpace(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = fn(i); err != nil {
			return 0, err
		}
		i = SkipSpace(d, i)
		if i < len(d) && d[i] == ',' {
			i = SkipSpace(d, i+1)
			continue
		}
		if i < len(d) && d[i] == ']' {
			return i + 1, nil
		}
		return 0, fmt.Errorf("%w: ',' or ']' expected", ErrSyntax)
	}
}

// EachMember reads the whole JSON document d as an object (see Members).
func EachMember(d []byte, fn func(key []byte, i int) (int, error)) error {
	_, err := Members(d, SkipSpace(d, 0), fn)
	return err
}

// ReadString reads a string or null ("") at d[i].
func ReadString(d []byte, i int) (string, int, error) {
	v, end, err := Value(d, i)
	if err != nil {
		return "", 0, err
	}
	s, err := Str(v)
	return s, end, err
}

// ReadInt reads an integer (a Unix timestamp) or null (0) at d[i].
func ReadInt(d []byte, i int) (int64, int, error) {
	v, end, err := Value(d, i)
	if err != nil {
		return 0, 0, err
	}
	n, err := Integer(v)
	return n, end, err
}

// ReadBool reads true, false or null (false) at d[i].
func ReadBool(d []byte, i int) (bool, int, error) {
	v, end, err := Value(d, i)
	if err != nil {
		return false, 0, err
	}
	b, err := Boolean(v)
	return b, end, err
}

// ReadRef reads a Stripe reference at d[i] (see Ref).
func ReadRef(d []byte, i int) (string, int, error) {
	v, end, err := Value(d, i)
	if err != nil {
		return "", 0, err
	}
	s, err := Ref(v)
	return s, end, err
}

// Str reads a JSON string or null ("").
func Str(v []byte) (string, error) {
	if IsNull(v) {
		return "", nil
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", fmt.Errorf("string expected, got %.40s", v)
	}
	if inner := v[1 : len(v)-1]; Plain(inner) {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("string: %w", err)
	}
	return s, nil
}

// Integer reads a JSON integer or null (0).
func Integer(v []byte) (int64, error) {
	if IsNull(v) {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Integer expected, got %.40s", v)
	}
	return n, nil
}

// Boolean reads true, false or null (false).
func Boolean(v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null", "":
		return false, nil
	}
	return false, fmt.Errorf("Boolean expected, got %.40s", v)
}

// Ref reads a Stripe reference: an id string, an expanded object with an "id", or null ("").
// Anything else is an error.
func Ref(v []byte) (string, error) {
	v = bytes.TrimSpace(v)
	if IsNull(v) {
		return "", nil
	}
	switch v[0] {
	case '"':
		return Str(v)
	case '{':
		var id string
		err := EachMember(v, func(key []byte, i int) (int, error) {
			if string(key) != "id" {
				return SkipValue(v, i)
			}
			s, end, err := ReadString(v, i)
			id = s
			return end, err
		})
		if err != nil {
			return "", fmt.Errorf("expanded reference: %w", err)
		}
		return id, nil
	default:
		return "", fmt.Errorf("reference is neither an id nor an object: %.40s", v)
	}
}

// Plain reports whether the contents of a JSON string are its value as they stand: printable
// ASCII without escapes (every Stripe id and status). Anything else is left to encoding/json,
// which unescapes and replaces invalid UTF-8 as it always does.
func Plain(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x80 || c == '\\' || c == '"' {
			return false
		}
	}
	return true
}
