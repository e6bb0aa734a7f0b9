package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Conn is one keep-alive HTTP/1.1 connection, owned by one worker (not safe for concurrent
// use). It writes each request in one go and reads the answer in the caller's goroutine, which
// costs the machine a fraction of what net/http's client does (two goroutines and channel
// hand-offs per connection): on a small machine the load generator shares the cores with the
// services under test, so what it spends they lose. Use an http.Client where that does not
// matter.
type Conn struct {
	addr string
	nc   net.Conn
	r    *bufio.Reader
	buf  []byte
}

// NewConn returns a connection to addr (host:port), dialled on first use and again after an
// error.
func NewConn(addr string) *Conn { return &Conn{addr: addr} }

// Header is one request header.
type Header struct{ Name, Value string }

// Do sends one request and reads its answer. A transport error closes the connection, and the
// request is not retried.
func (c *Conn) Do(method, path string, headers []Header, body []byte) (Answer, error) {
	if c.nc == nil {
		nc, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(context.Background(), "tcp", c.addr)
		if err != nil {
			return Answer{}, err
		}
		c.nc, c.r = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	b := c.buf[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\n"...)
	for _, h := range headers {
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if body != nil {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	c.buf = b
	_ = c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.Close()
		return Answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.Close()
		return Answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.Close()
	}
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return Answer{Status: resp.StatusCode, Body: out.Bytes()}, nil
}

// Close closes the connection; the next Do dials again.
func (c *Conn) Close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc, c.r = nil, nil
	}
}

// Conns is one Conn for each worker of a run, all to one address.
type Conns []*Conn

// NewConns returns n connections to addr.
func NewConns(addr string, n int) Conns {
	cs := make(Conns, n)
	for i := range cs {
		cs[i] = NewConn(addr)
	}
	return cs
}

// Close closes every connection.
func (cs Conns) Close() {
	for _, c := range cs {
		c.Close()
	}
}

// PostWebhook is PostWebhook of the package over worker's connection, to path.
func (cs Conns) PostWebhook(worker int, path string, w Webhook) (Answer, error) {
	return cs[worker].Do(http.MethodPost, path, []Header{
		{"Content-Type", "application/json; charset=utf-8"},
		{"Stripe-Signature", w.Signature},
		{"User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
	}, w.Body)
}

// Get is Get of the package over worker's connection, to path.
func (cs Conns) Get(worker int, path, token string) (Answer, error) {
	return cs[worker].Do(http.MethodGet, path, []Header{{"Authorization", "Bearer " + token}}, nil)
}
