package main

import (
	"bytes"
	"sync"
)

// maxPooledBody is the largest body buffer kept for reuse. Stripe's events are 1-10 KB; a buffer
// grown by a rare large body is left to the garbage collector, so the pool never holds more
// than a few hundred kilobytes of typical buffers however large MAX_BODY_BYTES is.
const maxPooledBody = 64 << 10

// bodyBuffers reuses the buffers webhook bodies are read into. A fresh buffer per request grew
// from 4 KB past a real 6 KB event, zeroing and copying on every request: about 12 KB allocated
// per webhook, the largest share of the listener's garbage (BenchmarkReadBody).
type bodyBuffers struct{ pool sync.Pool }

// get returns an empty buffer.
func (b *bodyBuffers) get() *bytes.Buffer {
	if buf, ok := b.pool.Get().(*bytes.Buffer); ok {
		return buf
	}
	return bytes.NewBuffer(make([]byte, 0, 8<<10))
}

// put returns buf for reuse. WARNING: nothing may hold buf's bytes afterwards (the event's Raw,
// Object and PreviousAttributes alias them): the next request overwrites them.
func (b *bodyBuffers) put(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBody {
		return
	}
	buf.Reset()
	b.pool.Put(buf)
}
