package pgpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tollgate/tollgate/processor/internal/service"
)

// SchemaCheck caches the database's schema status (schemaStatus, which goes through
// golang-migrate and can wait on its migration lock): refresh updates it, check answers from it.
type SchemaCheck struct {
	url      string
	maxAge   time.Duration
	mu       sync.Mutex
	err      error
	Checked  time.Time
	observed bool
}

func NewSchemaCheck(url string, maxAge time.Duration) *SchemaCheck {
	return &SchemaCheck{url: url, maxAge: maxAge}
}

func (s *SchemaCheck) Refresh() {
	err := SchemaStatus(s.url)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err, s.Checked, s.observed = err, time.Now(), true
}

func (s *SchemaCheck) Check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.observed:
		return errors.New("schema: not checked yet")
	case s.err != nil:
		return s.err
	case time.Since(s.Checked) > s.maxAge:
		return fmt.Errorf("schema: last checked %s ago", time.Since(s.Checked).Round(time.Second))
	}
	return nil
}

// Watch re-reads the schema version every SchemaEvery until ctx is done, for readiness.
func (s *SchemaCheck) Watch(ctx context.Context) {
	service.Loop{Interval: schemaEvery, Delay: true}.Run(ctx, func(context.Context) service.Next {
		s.Refresh()
		return service.Wait
	})
}
