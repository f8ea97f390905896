// Command probe is the program of the e2e node's test image:
//
//	probe serve [PORT]   serve HTTP on every address of the pod (default port 8080): GET / answers
//	                     "probe <hostname>", and each request is logged to stdout
//	probe get URL        GET URL and print the body; exit 1 on an error or a status >= 400
//	probe cat FILE       print a file (e.g. /proc/self/status: user, capabilities, seccomp mode)
//	probe send ADDR LINE connect to host:port over TCP, send LINE and CRLF, print the first line back
//	                     (a Redis inline command: probe send 10.244.0.1:6379 PING prints +PONG)
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		port := "8080"
		if len(args) > 1 {
			port = args[1]
		}
		os.Exit(serve(port))
	case "get":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: probe get URL")
			os.Exit(2)
		}
		os.Exit(get(args[1]))
	case "send":
		if len(args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: probe send HOST:PORT LINE")
			os.Exit(2)
		}
		os.Exit(send(args[1], args[2]))
	case "cat":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: probe cat FILE")
			os.Exit(2)
		}
		data, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "probe: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown command %q (expected serve, get, send or cat)\n", args[0])
		os.Exit(2)
	}
}

func serve(port string) int {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("probe: %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "probe %s\n", host)
	})
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	fmt.Printf("probe: listening on :%s\n", port)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintf(os.Stderr, "probe: serve on :%s: %v\n", port, err)
		return 1
	}
	fmt.Println("probe: stopped")
	return 0
}

func get(url string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: GET %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: GET %s: reading the body: %v\n", url, err)
		return 1
	}
	os.Stdout.Write(body)
	if resp.StatusCode >= 400 {
		fmt.Fprintf(os.Stderr, "probe: GET %s: status %d\n", url, resp.StatusCode)
		return 1
	}
	return 0
}

func send(addr, line string) int {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: connect %s: %v\n", addr, err)
		return 1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\r\n", line); err != nil {
		fmt.Fprintf(os.Stderr, "probe: send to %s: %v\n", addr, err)
		return 1
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: read from %s: %v\n", addr, err)
		return 1
	}
	fmt.Print(reply)
	return 0
}
