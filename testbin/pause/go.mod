// Wrapper module: the programs of the e2e node's local images, pause (the pod sandbox) and probe (a
// tiny HTTP server and client for pod tests). Standard library only.
module funcd.dev/testbin/pause

go 1.24.0
