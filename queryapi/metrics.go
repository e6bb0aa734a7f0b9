package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the instance's Prometheus series, registered on the process's own registry.
type metrics struct {
	requests *prometheus.HistogramVec
	// observers caches requests' children by labels: a map read is cheaper than
	// WithLabelValues on every request.
	observersMu        sync.RWMutex
	observers          map[requestLabels]prometheus.Observer
	failOpen           prometheus.Gauge
	cacheHits          prometheus.Counter
	cacheMisses        prometheus.Counter
	cacheRefreshes     prometheus.Counter
	cacheInvalidations prometheus.Counter
	cacheFlushes       prometheus.Counter
	cacheEvictions     prometheus.Counter
	cacheListening     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		observers: make(map[requestLabels]prometheus.Observer),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_queryapi_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "status"}),
		failOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_queryapi_fail_open",
			Help: "1 while the fail-open switch is on (every answer grants access), else 0.",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_hits_total",
			Help: "Answers served from the in-process cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_misses_total",
			Help: "Answers that needed a read of Postgres.",
		}),
		cacheRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_refreshes_total",
			Help: "Background reads of Postgres that renewed an answer in use before it expired.",
		}),
		cacheInvalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_invalidations_total",
			Help: "Change notifications applied to the cache.",
		}),
		cacheFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_flushes_total",
			Help: "Times the whole cache was dropped (LISTEN session lost or regained, TRUNCATE).",
		}),
		cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_queryapi_cache_evictions_total",
			Help: "Answers dropped to keep the cache within QUERYAPI_CACHE_BYTES.",
		}),
		cacheListening: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_queryapi_cache_listening",
			Help: "1 while the LISTEN session that keeps the cache fresh is up; 0 means every read goes to Postgres.",
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.failOpen, m.cacheHits, m.cacheMisses,
		m.cacheRefreshes, m.cacheInvalidations, m.cacheFlushes, m.cacheEvictions, m.cacheListening} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}

// observe is the only global middleware (echo applies each one anew on every request). It
// turns a panic into an error, lets the error handler write the answer, then records the time
// by route pattern (never the raw path: ids would explode the series) and status.
func (m *metrics) observe(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			start := time.Now()
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler { //nolint:errorlint // a sentinel panic value, never wrapped
						panic(r)
					}
					logger.Error("panic in handler", "route", c.Path(), "panic", r, "stack", string(debug.Stack()))
					err = fmt.Errorf("panic: %v", r)
				}
				if err != nil {
					c.Error(err)
					err = nil
				}
				route := c.Path()
				if route == "" {
					route = "unmatched"
				}
				m.observer(route, c.Response().Status).Observe(time.Since(start).Seconds())
			}()
			return next(c)
		}
	}
}

type requestLabels struct {
	route  string
	status int
}

// observer is the request histogram's child for route and status.
func (m *metrics) observer(route string, status int) prometheus.Observer {
	l := requestLabels{route, status}
	m.observersMu.RLock()
	o, ok := m.observers[l]
	m.observersMu.RUnlock()
	if ok {
		return o
	}
	o = m.requests.WithLabelValues(route, strconv.Itoa(status))
	m.observersMu.Lock()
	m.observers[l] = o
	m.observersMu.Unlock()
	return o
}
