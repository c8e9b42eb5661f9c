package ports

import (
	"context"
	"encoding/json"
	"time"

	"galaxy/rtmanager/internal/domain/health"
	"galaxy/rtmanager/internal/domain/runtime"
)

type RuntimeRecordStore interface {
	ListByStatus(ctx context.Context, status runtime.Status) ([]runtime.RuntimeRecord, error)
}

type HealthEventEnvelope struct {
	GameID      string           `json:"game_id"`
	ContainerID string           `json:"container_id"`
	EventType   health.EventType `json:"event_type"`
	OccurredAt  time.Time        `json:"occurred_at"`
	Details     json.RawMessage  `json:"details"`
}

type HealthEventPublisher interface {
	Publish(ctx context.Context, envelope HealthEventEnvelope) error
}
