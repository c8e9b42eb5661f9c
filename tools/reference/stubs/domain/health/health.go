package health

type EventType string

const (
	EventTypeProbeFailed    EventType = "probe_failed"
	EventTypeProbeRecovered EventType = "probe_recovered"
)
