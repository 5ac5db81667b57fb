package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

func init() {
	register("controller", "run the OpenFlow controller", runController)
}

func runController(args []string) int {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	bpPath := fs.String("blueprint", "", "blueprint file (required); SIGHUP or a file change reloads it")
	listen := fs.String("listen", "tcp:127.0.0.1:6653", "OpenFlow listen address tcp:HOST:PORT (set the management address)")
	httpAddr := fs.String("http", "127.0.0.1:9653", "status API address (off = disabled)")
	drift := fs.Duration("drift-interval", 30*time.Second, "re-read installed flows and repair drift this often")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bpPath == "" {
		fmt.Fprintln(os.Stderr, "vpcflow controller: --blueprint is required")
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow controller:", err)
		return 2
	}
	c, err := controller.New(controller.Options{BlueprintPath: *bpPath, Listen: *listen, HTTP: *httpAddr,
		DriftInterval: *drift, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow controller: cannot start:")
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = c.Reload("SIGHUP")
		}
	}()
	if err := c.Run(ctx); err != nil {
		log.WithError(err).Error("controller failed")
		return 1
	}
	return 0
}
