// refrun runs the reference worker's real Tick N times over a records file
// (DESIGN.md format) and prints the events as JSONL.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"galaxy/rtmanager/internal/domain/runtime"
	"galaxy/rtmanager/internal/healthprobe"
	"galaxy/rtmanager/internal/ports"
	"galaxy/rtmanager/internal/telemetry"
)

type fileStore struct{ path string }

func (s fileStore) ListByStatus(ctx context.Context, status runtime.Status) ([]runtime.RuntimeRecord, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	var all []runtime.RuntimeRecord
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	running := all[:0]
	for _, r := range all {
		if r.Status == status {
			running = append(running, r)
		}
	}
	return running, nil
}

type publisher struct {
	mu  sync.Mutex
	out *bufio.Writer
	enc *json.Encoder
}

func (p *publisher) Publish(ctx context.Context, e ports.HealthEventEnvelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.enc.Encode(e); err != nil {
		return err
	}
	return p.out.Flush()
}

func main() {
	records := flag.String("records", "", "")
	ticks := flag.Int("ticks", 1, "")
	threshold := flag.Int("failures-threshold", 3, "")
	timeout := flag.Duration("probe-timeout", 2*time.Second, "")
	flag.Parse()
	out := bufio.NewWriter(os.Stdout)
	w, err := healthprobe.NewWorker(healthprobe.Dependencies{
		RuntimeRecords: fileStore{*records}, HealthEvents: &publisher{out: out, enc: json.NewEncoder(out)},
		HTTPClient: &http.Client{}, Telemetry: &telemetry.Runtime{},
		Interval: time.Second, ProbeTimeout: *timeout, FailuresThreshold: *threshold,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := time.Now()
	for i := 0; i < *ticks; i++ {
		w.Tick(context.Background())
	}
	fmt.Fprintf(os.Stderr, "refrun: %d ticks in %v\n", *ticks, time.Since(start))
}
