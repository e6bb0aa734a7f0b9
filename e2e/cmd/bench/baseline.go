package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stripe/stripe-go/v76/webhook"
)

// baseline is an HTTP server in this process that the load generator drives exactly as it
// drives the services, to show what the machine gives for the least work of a kind.
type baseline struct {
	url string
	srv *http.Server
}

// serveBaseline serves h on a free loopback port with the services' kind of timeouts.
func serveBaseline(h http.Handler) (*baseline, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	return &baseline{url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (b *baseline) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

// startSignatureBaseline answers POST /webhooks/stripe as the listener would if it stored
// nothing: read the body (up to 1 MiB), verify the Stripe signature with stripe-go, 200.
func startSignatureBaseline(secret string) (*baseline, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/stripe", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, `{"error":{"code":"payload_too_large"}}`, http.StatusRequestEntityTooLarge)
			return
		}
		if err := webhook.ValidatePayloadWithTolerance(body, r.Header.Get("Stripe-Signature"), secret, 5*time.Minute); err != nil {
			http.Error(w, `{"error":{"code":"invalid_signature"}}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"received":true,"duplicate":false}` + "\n"))
	})
	return serveBaseline(mux)
}

// startBareHandler answers GET /v1/users/:user_id/entitlement through echo, as the query API
// routes it, with the fixed bytes of a real answer and nothing else: no token check, no cache,
// no metrics.
func startBareHandler(answer []byte) (*baseline, error) {
	if len(answer) == 0 {
		return nil, errors.New("bare handler: empty answer")
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/v1/users/:user_id/entitlement", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, answer)
	})
	return serveBaseline(e)
}
