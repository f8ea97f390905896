-- What daprd sends over the HTTP app protocol for one pub/sub message (a CloudEvent in JSON),
-- POSTed to funcd's route for the input named "pubsub" (bench/peers/dapr_fn/function.yaml).
wrk.method = "POST"
wrk.path = "/dapr/topics/pubsub"
wrk.body = '{"data":{"n":1},"datacontenttype":"application/json","id":"8d5f6d1e-6a3c-4c55-9f0e-1b1f3f0f8a11",'
  .. '"pubsubname":"pubsub","source":"bench-publisher","specversion":"1.0","time":"2026-01-01T00:00:00Z",'
  .. '"topic":"bench","traceid":"00-00000000000000000000000000000000-0000000000000000-00",'
  .. '"traceparent":"00-00000000000000000000000000000000-0000000000000000-00","tracestate":"",'
  .. '"type":"com.dapr.event.sent"}'
wrk.headers["Content-Type"] = "application/cloudevents+json"
