package runtime

type Status string

const StatusRunning Status = "running"

type RuntimeRecord struct {
	GameID             string `json:"game_id"`
	CurrentContainerID string `json:"current_container_id"`
	EngineEndpoint     string `json:"engine_endpoint"`
	Status             Status `json:"status"`
}
