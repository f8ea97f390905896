package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	nr "github.com/dapr/components-contrib/nameresolution"
	"github.com/dapr/kit/logger"
)

// loopbackResolver resolves app IDs through a shared directory instead of multicast DNS.
//
// On Init each sidecar writes "<host>:<internal gRPC port>" to <dir>/<namespace>.<app-id>;
// ResolveID reads that file back. The directory comes from the component configuration key
// "dir", else $FUNCD_DAPR_NR_DIR, else <tmp>/funcd-dapr-nr. It only works between sidecars on
// one machine, which is all the tests need.
type loopbackResolver struct {
	log   logger.Logger
	dir   string
	entry string
	addr  string
}

func newLoopbackResolver(log logger.Logger) nr.Resolver {
	return &loopbackResolver{log: log}
}

func (r *loopbackResolver) Init(_ context.Context, md nr.Metadata) error {
	r.dir = os.Getenv("FUNCD_DAPR_NR_DIR")
	if cfg, ok := md.Configuration.(map[string]any); ok {
		if dir, ok := cfg["dir"].(string); ok && dir != "" {
			r.dir = dir
		}
	}
	if r.dir == "" {
		r.dir = filepath.Join(os.TempDir(), "funcd-dapr-nr")
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("loopback resolver: %w", err)
	}
	inst := md.Instance
	if inst.AppID == "" || inst.DaprInternalPort == 0 {
		r.log.Infof("loopback resolver (no multicast): not registering; app ID or internal port missing")
		return nil
	}
	host := inst.Address
	if host == "" {
		host = "127.0.0.1"
	}
	r.entry = r.entryPath(inst.AppID, inst.Namespace)
	r.addr = net.JoinHostPort(host, strconv.Itoa(inst.DaprInternalPort))
	if err := os.WriteFile(r.entry, []byte(r.addr), 0o644); err != nil {
		return fmt.Errorf("loopback resolver: %w", err)
	}
	r.log.Infof("loopback resolver (no multicast): %s -> %s in %s", inst.AppID, r.addr, r.dir)
	return nil
}

func (r *loopbackResolver) entryPath(appID, namespace string) string {
	return filepath.Join(r.dir, namespace+"."+appID)
}

func (r *loopbackResolver) ResolveID(_ context.Context, req nr.ResolveRequest) (string, error) {
	data, err := os.ReadFile(r.entryPath(req.ID, req.Namespace))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("loopback resolver: app ID %q (namespace %q) is not registered in %s", req.ID, req.Namespace, r.dir)
	}
	if err != nil {
		return "", fmt.Errorf("loopback resolver: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

func (r *loopbackResolver) Close() error {
	if r.entry == "" {
		return nil
	}
	// Remove our entry only if another sidecar has not taken the app ID over since.
	if data, err := os.ReadFile(r.entry); err == nil && string(data) == r.addr {
		_ = os.Remove(r.entry)
	}
	return nil
}
