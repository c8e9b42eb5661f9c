package telemetry

import (
	"context"
	"sync"
)

type Runtime struct {
	mu     sync.Mutex
	Counts map[string]int
}

func (r *Runtime) RecordHealthEvent(ctx context.Context, eventType string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	r.Counts[eventType]++
}
