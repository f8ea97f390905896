// Command daprd is a slim build of the Dapr sidecar for funcd's end-to-end tests.
//
// It starts the same runtime as upstream's cmd/daprd (github.com/dapr/dapr, version pinned in
// go.mod), but registers only the components the tests use:
//
//	pubsub.in-memory, pubsub.redis, state.in-memory, state.redis,
//	bindings.cron (input), bindings.localstorage (output)
//
// and, instead of the mDNS name resolver (which sends multicast), a loopback resolver that
// keeps one file per app ID in a directory (see resolver.go). Nothing here sends multicast.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/dapr/dapr/cmd/daprd/options"
	"github.com/dapr/dapr/pkg/buildinfo"
	bindingsLoader "github.com/dapr/dapr/pkg/components/bindings"
	configurationLoader "github.com/dapr/dapr/pkg/components/configuration"
	conversationLoader "github.com/dapr/dapr/pkg/components/conversation"
	cryptoLoader "github.com/dapr/dapr/pkg/components/crypto"
	lockLoader "github.com/dapr/dapr/pkg/components/lock"
	httpMiddlewareLoader "github.com/dapr/dapr/pkg/components/middleware/http"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
	secretstoresLoader "github.com/dapr/dapr/pkg/components/secretstores"
	stateLoader "github.com/dapr/dapr/pkg/components/state"
	"github.com/dapr/dapr/pkg/healthz"
	"github.com/dapr/dapr/pkg/metrics"
	"github.com/dapr/dapr/pkg/modes"
	"github.com/dapr/dapr/pkg/runtime"
	"github.com/dapr/dapr/pkg/runtime/registry"
	"github.com/dapr/dapr/pkg/security"
	"github.com/dapr/kit/concurrency"
	"github.com/dapr/kit/logger"
	"github.com/dapr/kit/signals"
	"go.opencensus.io/stats/view"

	"github.com/dapr/components-contrib/bindings/cron"
	"github.com/dapr/components-contrib/bindings/localstorage"
	pubsubInMemory "github.com/dapr/components-contrib/pubsub/in-memory"
	pubsubRedis "github.com/dapr/components-contrib/pubsub/redis"
	stateInMemory "github.com/dapr/components-contrib/state/in-memory"
	stateRedis "github.com/dapr/components-contrib/state/redis"
)

var (
	log        = logger.NewLogger("dapr.runtime")
	logContrib = logger.NewLogger("dapr.contrib")
)

func registerComponents() {
	pubsubLoader.DefaultRegistry.RegisterComponent(pubsubInMemory.New, "in-memory")
	pubsubLoader.DefaultRegistry.RegisterComponent(pubsubRedis.NewRedisStreams, "redis")
	stateLoader.DefaultRegistry.RegisterComponent(stateInMemory.NewInMemoryStateStore, "in-memory")
	stateLoader.DefaultRegistry.RegisterComponent(stateRedis.NewRedisStateStore, "redis")
	bindingsLoader.DefaultRegistry.RegisterInputBinding(cron.NewCron, "cron")
	bindingsLoader.DefaultRegistry.RegisterOutputBinding(localstorage.NewLocalStorage, "localstorage")
	// The runtime asks for "mdns" when no resolver is configured in standalone mode. This build
	// answers that name with the loopback resolver, so that app IDs resolve without multicast.
	nrLoader.DefaultRegistry.RegisterComponent(newLoopbackResolver, "loopback", "mdns")
}

func main() {
	opts, err := options.New(os.Args[1:])
	if err != nil {
		log.Fatalf("Failed to parse flags: %v", err)
	}
	if opts.RuntimeVersion {
		fmt.Println(buildinfo.Version()) //nolint:forbidigo
		return
	}
	if opts.BuildInfo {
		fmt.Printf("Version: %s\nBuild: funcd testbin (slim components, loopback name resolution)\n", buildinfo.Version()) //nolint:forbidigo
		return
	}
	if opts.WaitCommand {
		runtime.WaitUntilDaprOutboundReady(opts.DaprHTTPPort)
		return
	}

	opts.Logger.SetAppID(opts.AppID)
	if err = logger.ApplyOptionsToLoggers(&opts.Logger); err != nil {
		log.Fatal(err)
	}
	log.Infof("Starting Dapr Runtime (funcd testbin build) -- version %s", buildinfo.Version())

	registerComponents()
	for _, setLogger := range []func(){
		func() { secretstoresLoader.DefaultRegistry.Logger = logContrib },
		func() { stateLoader.DefaultRegistry.Logger = logContrib },
		func() { cryptoLoader.DefaultRegistry.Logger = logContrib },
		func() { configurationLoader.DefaultRegistry.Logger = logContrib },
		func() { lockLoader.DefaultRegistry.Logger = logContrib },
		func() { pubsubLoader.DefaultRegistry.Logger = logContrib },
		func() { nrLoader.DefaultRegistry.Logger = logContrib },
		func() { bindingsLoader.DefaultRegistry.Logger = logContrib },
		func() { conversationLoader.DefaultRegistry.Logger = logContrib },
		func() { httpMiddlewareLoader.DefaultRegistry.Logger = log },
	} {
		setLogger()
	}

	// As upstream: SIGHUP (hot reload) stops the runtime and starts it again with the same flags;
	// SIGTERM/SIGINT end the process.
	ctx := signals.Context()
	reloads := signals.OnHUP(ctx)
	for {
		select {
		case <-ctx.Done():
			log.Info("Daprd shutdown gracefully")
			return
		case runCtx, ok := <-reloads:
			if !ok {
				log.Info("Daprd shutdown gracefully")
				return
			}
			if err := runOnce(runCtx, opts); err != nil {
				log.Fatalf("Fatal error from runtime: %s", err)
			}
			if runCtx.Err() == nil {
				// The runtime stopped by itself (the shutdown API), not on a signal: exit.
				log.Info("Daprd shutdown gracefully")
				return
			}
		}
	}
}

// runOnce starts the security provider and the runtime and returns when both have stopped.
func runOnce(ctx context.Context, opts *options.Options) error {
	reg := registry.NewOptions().
		WithSecretStores(secretstoresLoader.DefaultRegistry).
		WithStateStores(stateLoader.DefaultRegistry).
		WithConfigurations(configurationLoader.DefaultRegistry).
		WithLocks(lockLoader.DefaultRegistry).
		WithPubSubs(pubsubLoader.DefaultRegistry).
		WithNameResolutions(nrLoader.DefaultRegistry).
		WithBindings(bindingsLoader.DefaultRegistry).
		WithCryptoProviders(cryptoLoader.DefaultRegistry).
		WithHTTPMiddlewares(httpMiddlewareLoader.DefaultRegistry).
		WithConversations(conversationLoader.DefaultRegistry)

	health := healthz.New()
	secProvider, err := security.New(ctx, security.Options{
		SentryAddress:           opts.SentryAddress,
		ControlPlaneTrustDomain: opts.ControlPlaneTrustDomain,
		ControlPlaneNamespace:   opts.ControlPlaneNamespace,
		TrustAnchors:            opts.TrustAnchors,
		AppID:                   opts.AppID,
		MTLSEnabled:             opts.EnableMTLS,
		Mode:                    modes.DaprMode(opts.Mode),
		Healthz:                 health,
		JwtAudiences:            opts.SentryRequestJwtAudiences,
	})
	if err != nil {
		return err
	}

	runRuntime := func(ctx context.Context) error {
		sec, err := secProvider.Handler(ctx)
		if err != nil {
			return err
		}
		rt, err := runtime.FromConfig(ctx, runtimeConfig(opts, reg, sec, health))
		if err != nil {
			return err
		}
		return rt.Run(ctx)
	}
	return concurrency.NewRunnerManager(secProvider.Run, runRuntime).Run(ctx)
}

// runtimeConfig maps the parsed command line onto the runtime's configuration.
func runtimeConfig(opts *options.Options, reg *registry.Options, sec security.Handler, health healthz.Healthz) *runtime.Config {
	return &runtime.Config{
		AppID:                         opts.AppID,
		ActorsService:                 opts.ActorsService,
		ActorsDisseminationTimeout:    opts.ActorsDisseminationTimeout,
		HotReloadReconcileInterval:    opts.HotReloadReconcileInterval,
		RemindersService:              opts.RemindersService,
		SchedulerAddress:              opts.SchedulerAddress,
		SchedulerStreams:              opts.SchedulerJobStreams,
		AllowedOrigins:                opts.AllowedOrigins,
		ResourcesPath:                 opts.ResourcesPath,
		ControlPlaneAddress:           opts.ControlPlaneAddress,
		AppProtocol:                   opts.AppProtocol,
		Mode:                          opts.Mode,
		DaprHTTPPort:                  opts.DaprHTTPPort,
		DaprInternalGRPCPort:          opts.DaprInternalGRPCPort,
		DaprInternalGRPCListenAddress: opts.DaprInternalGRPCListenAddress,
		DaprAPIGRPCPort:               opts.DaprAPIGRPCPort,
		DaprAPIListenAddresses:        opts.DaprAPIListenAddresses,
		DaprPublicPort:                opts.DaprPublicPort,
		DaprPublicListenAddress:       opts.DaprPublicListenAddress,
		ApplicationPort:               opts.AppPort,
		ProfilePort:                   opts.ProfilePort,
		EnableProfiling:               opts.EnableProfiling,
		AppMaxConcurrency:             opts.AppMaxConcurrency,
		EnableMTLS:                    opts.EnableMTLS,
		SentryAddress:                 opts.SentryAddress,
		MaxRequestSize:                opts.MaxRequestSize,
		ReadBufferSize:                opts.ReadBufferSize,
		UnixDomainSocket:              opts.UnixDomainSocket,
		DaprGracefulShutdownSeconds:   opts.DaprGracefulShutdownSeconds,
		DaprBlockShutdownDuration:     opts.DaprBlockShutdownDuration,
		DisableBuiltinK8sSecretStore:  opts.DisableBuiltinK8sSecretStore,
		EnableAppHealthCheck:          opts.EnableAppHealthCheck,
		AppHealthCheckPath:            opts.AppHealthCheckPath,
		AppHealthProbeInterval:        opts.AppHealthProbeInterval,
		AppHealthProbeTimeout:         opts.AppHealthProbeTimeout,
		AppHealthThreshold:            opts.AppHealthThreshold,
		AppChannelAddress:             opts.AppChannelAddress,
		EnableAPILogging:              opts.EnableAPILogging,
		Config:                        opts.Config,
		DisableInitEndpoints:          opts.DisableInitEndpoints,
		Metrics: metrics.Options{
			Enabled:       opts.Metrics.Enabled(),
			Log:           log,
			Port:          opts.Metrics.Port(),
			Namespace:     metrics.DefaultMetricNamespace,
			Healthz:       health,
			ListenAddress: opts.Metrics.ListenAddress(),
			Meter:         view.NewMeter(),
		},
		AppSSL:         opts.AppSSL,
		ComponentsPath: opts.ComponentsPath,
		Registry:       reg,
		Security:       sec,
		Healthz:        health,
	}
}
