// Command ctl runs vpcflow's controller exactly as `vpcflow controller`
// does (controller.New + Run with the same defaults), for the benchmarks,
// with what the benchmarks need on top: JSON logs with nanosecond
// timestamps, CPU/heap profiles, and the status (plus the goroutine count)
// on a unix socket, which is reachable from outside the benchmark's network
// namespace. SIGHUP reloads the blueprint; SIGTERM stops (and writes the
// profiles).
//
//	ctl -blueprint BP -listen tcp:127.0.0.1:6653 -sock DIR/ctl.sock [-cpuprofile F] [-memprofile F]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/controller"
)

func main() {
	bp := flag.String("blueprint", "", "blueprint file")
	listen := flag.String("listen", "tcp:127.0.0.1:6653", "OpenFlow listen address")
	httpAddr := flag.String("http", "off", "controller HTTP status address (off: use -sock)")
	sock := flag.String("sock", "", "unix socket serving /status and /goroutines")
	cpuprof := flag.String("cpuprofile", "", "write a CPU profile here")
	memprof := flag.String("memprofile", "", "write a heap profile here on exit")
	level := flag.String("log-level", "info", "log level")
	drift := flag.Duration("drift-interval", 0, "drift interval (0 = controller default)")
	full := flag.Int("full-reconciles", 0, "bridges reconciled in full at once (0 = controller default)")
	gather := flag.Duration("reload-gather", 100*time.Millisecond, "how long a reload's bridges wait to write together (0 = off)")
	flag.Parse()
	if err := run(*bp, *listen, *httpAddr, *sock, *cpuprof, *memprof, *level, *drift, *full, *gather); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ctl:", err)
		os.Exit(1)
	}
}

func run(bp, listen, httpAddr, sock, cpuprof, memprof, level string, drift time.Duration, full int, gather time.Duration) error {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return err
	}
	log.SetLevel(lv)
	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	c, err := controller.New(controller.Options{BlueprintPath: bp, Listen: listen, HTTP: httpAddr, DriftInterval: drift, FullReconciles: full, ReloadGather: gatherOpt(gather), Log: log})
	if err != nil {
		return err
	}
	if sock != "" {
		_ = os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(c.Status())
		})
		mux.HandleFunc("/goroutines", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, runtime.NumGoroutine())
		})
		mux.HandleFunc("/reload", func(w http.ResponseWriter, r *http.Request) {
			if err := c.Reload("bench"); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
			}
		})
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		go func() { _ = http.Serve(ln, mux) }()
		defer os.Remove(sock)
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
	err = c.Run(ctx)
	if memprof != "" {
		runtime.GC()
		if f, ferr := os.Create(memprof); ferr == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	return err
}

// gatherOpt maps -reload-gather to Options.ReloadGather (negative = off).
func gatherOpt(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
