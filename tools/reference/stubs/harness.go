package healthprobe

import (
	"context"
	"errors"

	"galaxy/rtmanager/internal/domain/runtime"
)

// ApplyOutcome drives the reference bookkeeping with one journal outcome.
func (worker *Worker) ApplyOutcome(ctx context.Context, record runtime.RuntimeRecord, healthy bool, status int, errText string) {
	if healthy {
		worker.recordSuccess(ctx, record)
		return
	}
	worker.recordFailure(ctx, record, status, errors.New(errText))
}

// PruneTo runs the reference prune against a running list.
func (worker *Worker) PruneTo(records []runtime.RuntimeRecord) { worker.pruneStates(records) }
