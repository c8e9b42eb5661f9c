// refreplay folds a healthprobe journal through the reference worker's own
// recordFailure/recordSuccess/pruneStates and prints the events as JSONL.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"galaxy/rtmanager/internal/domain/runtime"
	"galaxy/rtmanager/internal/healthprobe"
	"galaxy/rtmanager/internal/ports"
	"galaxy/rtmanager/internal/telemetry"
)

type line struct {
	Type        string          `json:"type"`
	GameID      string          `json:"game_id"`
	ContainerID string          `json:"container_id"`
	ObservedAt  time.Time       `json:"observed_at"`
	Result      json.RawMessage `json:"result"`
	Running     []string        `json:"running"`
}

type unhealthy struct {
	Unhealthy *struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	} `json:"unhealthy"`
}

type publisher struct{ enc *json.Encoder }

func (p publisher) Publish(ctx context.Context, e ports.HealthEventEnvelope) error {
	return p.enc.Encode(e)
}

type noStore struct{}

func (noStore) ListByStatus(context.Context, runtime.Status) ([]runtime.RuntimeRecord, error) {
	return nil, nil
}

func main() {
	threshold := flag.Int("failures-threshold", 3, "")
	flag.Parse()
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	var now time.Time
	w, err := healthprobe.NewWorker(healthprobe.Dependencies{
		RuntimeRecords: noStore{}, HealthEvents: publisher{json.NewEncoder(out)},
		HTTPClient: &http.Client{}, Telemetry: &telemetry.Runtime{},
		Interval: time.Second, ProbeTimeout: time.Second, FailuresThreshold: *threshold,
		Clock: func() time.Time { return now },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	n := 0
	for in.Scan() {
		n++
		if len(bytes.TrimSpace(in.Bytes())) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(in.Bytes(), &l); err != nil {
			fmt.Fprintf(os.Stderr, "line %d: %v\n", n, err)
			os.Exit(2)
		}
		switch l.Type {
		case "prune":
			recs := make([]runtime.RuntimeRecord, len(l.Running))
			for i, id := range l.Running {
				recs[i].GameID = id
			}
			w.PruneTo(recs)
		case "outcome":
			now = l.ObservedAt
			rec := runtime.RuntimeRecord{GameID: l.GameID, CurrentContainerID: l.ContainerID}
			if string(l.Result) == `"healthy"` {
				w.ApplyOutcome(ctx, rec, true, 0, "")
				continue
			}
			var u unhealthy
			if err := json.Unmarshal(l.Result, &u); err != nil || u.Unhealthy == nil {
				fmt.Fprintf(os.Stderr, "line %d: bad result\n", n)
				os.Exit(2)
			}
			w.ApplyOutcome(ctx, rec, false, u.Unhealthy.Status, u.Unhealthy.Error)
		}
	}
}
