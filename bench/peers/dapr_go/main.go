// A no-op Dapr subscriber built on the Dapr Go SDK: the ceiling of daprd itself in bench/async_bench.py.
//
//	dapr-go-bench PORT
//
// It subscribes to pubsub/bench over the AppCallback gRPC API and acks every event. Like the Python
// peers it reads the JSON data and, when BENCH_COUNT_FILE is set, appends one 16-byte record per event:
// the delivery latency in microseconds (handler time minus the "t" nanoseconds stamped in the data by
// the publisher), or -1 when the data has no stamp. BENCH_SPIN_MS > 0 adds that much CPU-bound work per
// event: a busy loop whose iteration count is calibrated at start-up.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/dapr/go-sdk/service/common"
	daprd "github.com/dapr/go-sdk/service/grpc"
)

var (
	countFile *os.File
	spinIters int
	sink      uint64
)

// spin runs n rounds of a loop the compiler cannot drop.
func spin(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + uint64(i)
	}
	sink = x
}

// calibrate returns the iteration count that takes about ms milliseconds (best of 20 trials).
func calibrate(ms float64) int {
	const trial = 1_000_000
	best := time.Duration(1 << 62)
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		spin(trial)
		if d := time.Since(t0); d < best {
			best = d
		}
	}
	return int(float64(trial) * ms * 1e6 / float64(best.Nanoseconds()))
}

func record(data interface{}) {
	if countFile == nil {
		return
	}
	lat := int64(-1)
	if m, ok := data.(map[string]interface{}); ok {
		if t, ok := m["t"].(float64); ok && t > 0 {
			lat = (time.Now().UnixNano() - int64(t)) / 1000
		}
	}
	_, _ = countFile.WriteString(fmt.Sprintf("%015d\n", lat))
}

func handle(_ context.Context, e *common.TopicEvent) (bool, error) {
	if spinIters > 0 {
		spin(spinIters)
	}
	record(e.Data)
	return false, nil
}

func main() {
	if len(os.Args) != 2 {
		log.Fatalf("usage: %s PORT", os.Args[0])
	}
	if path := os.Getenv("BENCH_COUNT_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			log.Fatalf("open %s: %v", path, err)
		}
		countFile = f
	}
	if v := os.Getenv("BENCH_SPIN_MS"); v != "" {
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil {
			log.Fatalf("BENCH_SPIN_MS=%q: %v", v, err)
		}
		if ms > 0 {
			spinIters = calibrate(ms)
			log.Printf("spin: %d iterations for %g ms", spinIters, ms)
		}
	}
	s, err := daprd.NewService("127.0.0.1:" + os.Args[1])
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	sub := &common.Subscription{PubsubName: "pubsub", Topic: "bench"}
	if err := s.AddTopicEventHandler(sub, handle); err != nil {
		log.Fatalf("subscribe: %v", err)
	}
	if err := s.Start(); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
