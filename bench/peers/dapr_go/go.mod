module funcd.local/bench/dapr-go

go 1.24.6

require github.com/dapr/go-sdk v1.13.0

require (
	github.com/dapr/dapr v1.16.0 // indirect
	go.opentelemetry.io/otel v1.36.0 // indirect
	golang.org/x/net v0.41.0 // indirect
	golang.org/x/sys v0.33.0 // indirect
	golang.org/x/text v0.26.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250603155806-513f23925822 // indirect
	google.golang.org/grpc v1.73.0 // indirect
	google.golang.org/protobuf v1.36.6 // indirect
)
