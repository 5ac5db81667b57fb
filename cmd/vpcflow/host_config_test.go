package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

const demoBP = "../../examples/demo/blueprint.yaml"

func hostConfigCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runHostConfig(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHostConfigCommand: `vpcflow host config` prints a host file that
// loads with --host-config (YAML and JSON), holds no VM address, and
// refuses bad input with exit 2 (usage) or 1 (blueprint, host).
func TestHostConfigCommand(t *testing.T) {
	bp, err := flows.Load(demoBP)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, format := range []string{"yaml", "json"} {
		code, out, errs := hostConfigCLI(t, "--blueprint", demoBP, "--host", "kvm3", "-o", format)
		if code != 0 || errs != "" {
			t.Fatalf("-o %s: exit %d, stderr %q", format, code, errs)
		}
		path := filepath.Join(dir, "kvm3."+format)
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		hc, err := flows.LoadHostConfig(path)
		if err != nil {
			t.Fatalf("-o %s output does not load: %v\n%s", format, err, out)
		}
		if hc.Host.Name != "kvm3" || len(hc.Peers) != 2 || hc.Revision != bp.Revision {
			t.Errorf("-o %s: %+v", format, hc)
		}
		for _, vm := range []string{"10.10.1.11", "52:54:00:b1:01:0b", "blue-web-1", "vnet0"} {
			if strings.Contains(out, vm) {
				t.Errorf("-o %s: the host file holds tenant data %q:\n%s", format, vm, out)
			}
		}
	}
	// --output-file, with the host-side settings.
	path := filepath.Join(dir, "host.yaml")
	code, out, errs := hostConfigCLI(t, "--blueprint", demoBP, "--host", "kvm1", "--output-file", path,
		"--bridge", "br-ex", "--tls-cert", "/etc/vpcflow/kvm1.pem", "--tls-key", "/etc/vpcflow/kvm1.key", "--tls-ca", "/etc/vpcflow/ca.pem")
	if code != 0 || out != "" || !strings.Contains(errs, path+": host file of kvm1 written") {
		t.Fatalf("--output-file: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	hc, err := flows.LoadHostConfig(path)
	if err != nil || hc.Bridge != "br-ex" || hc.OVSDBTLS == nil || hc.OVSDBTLS.CA != "/etc/vpcflow/ca.pem" {
		t.Fatalf("written host file: %+v %v", hc, err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--blueprint", demoBP}, 2, "--blueprint FILE and --host NAME are required"},
		{[]string{"--blueprint", demoBP, "--host", "kvm1", "-o", "table"}, 2, `-o "table": want yaml or json`},
		{[]string{"--blueprint", demoBP, "--host", "kvm1", "--tls-cert", "/a"}, 2, "go together"},
		{[]string{"--blueprint", demoBP, "--host", "kvm1", "--tls-cert", "a", "--tls-key", "/b", "--tls-ca", "/c"}, 2, `--tls-cert: "a" is a relative path`},
		{[]string{"--blueprint", demoBP, "--host", "kvm1", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--blueprint", demoBP, "--host", "kvm9"}, 1, `host "kvm9" is not in the blueprint`},
		{[]string{"--blueprint", "/nonexistent.yaml", "--host", "kvm1"}, 2, "read blueprint"}, // cannot tell: 2 (docs/cli.md)
		{[]string{"-h"}, 0, "usage: vpcflow host config"},
	} {
		code, _, errs := hostConfigCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d with %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

// TestHostFlagsSource: host apply/watch take exactly one of --host-config
// and --blueprint; with a host file the host is its own (by flag,
// hostname or the bridge's datapath id), never a peer, and the file's
// bridge and TLS paths are the defaults of --bridge and --tls-*.
func TestHostFlagsSource(t *testing.T) {
	dir := t.TempDir()
	hostFile := func(host string, extra ...string) string {
		p := filepath.Join(dir, host+".yaml")
		if code, _, errs := hostConfigCLI(t, append([]string{"--blueprint", demoBP, "--host", host, "--output-file", p}, extra...)...); code != 0 {
			t.Fatalf("host config %s: %s", host, errs)
		}
		return p
	}
	kvm1 := hostFile("kvm1", "--bridge", "br-ex", "--tls-cert", "/x/c.pem", "--tls-key", "/x/c.key", "--tls-ca", "/x/ca.pem")
	kvm2 := hostFile("kvm2")
	parse := func(hostname string, dpid uint64, args ...string) (*hostFlags, string, int) {
		hf := &hostFlags{
			hostname: func() (string, error) { return hostname, nil },
			bridgeDPID: func(context.Context, string, *tls.Config, string) (uint64, error) {
				if dpid == 0 {
					return 0, errors.New("no bridge")
				}
				return dpid, nil
			},
		}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		hf.register(fs)
		_, h, code := hf.parse("apply", fs, args)
		name := ""
		if h != nil {
			name = h.Name
		}
		return hf, name, code
	}
	for _, tc := range []struct {
		name, hostname string
		dpid           uint64
		args           []string
		want           string // host chosen, "" = refused
		code           int
		by             string
	}{
		{"both sources", "kvm1", 0, []string{"--host-config", kvm1, "--blueprint", demoBP}, "", 2, ""},
		{"no source", "kvm1", 0, nil, "", 2, ""},
		{"host file by hostname", "kvm1.lab.example", 0, []string{"--host-config", kvm1}, "kvm1", -1, "hostname"},
		{"host file by datapath id", "node-17", 0xa2, []string{"--host-config", kvm2}, "kvm2", -1, "datapath-id"},
		{"host file of a peer", "kvm1", 0xa1, []string{"--host-config", kvm2}, "", 1, ""},
		{"host file, wrong --host", "node-17", 0, []string{"--host-config", kvm2, "--host", "kvm1"}, "", 1, ""},
		{"host file, --host", "node-17", 0, []string{"--host-config", kvm2, "--host", "kvm2"}, "kvm2", -1, "flag"},
		{"blueprint by hostname", "kvm3", 0, []string{"--blueprint", demoBP}, "kvm3", -1, "hostname"},
		{"blueprint by datapath id", "node-17", 0xa3, []string{"--blueprint", demoBP}, "kvm3", -1, "datapath-id"},
		{"blueprint, nothing matches", "node-17", 0, []string{"--blueprint", demoBP}, "", 1, ""},
		{"a blueprint as host file", "kvm1", 0, []string{"--host-config", demoBP}, "", 1, ""},
	} {
		hf, got, code := parse(tc.hostname, tc.dpid, tc.args...)
		if got != tc.want || code != tc.code || hf.by != tc.by {
			t.Errorf("%s: host %q exit %d by %q; want %q exit %d by %q", tc.name, got, code, hf.by, tc.want, tc.code, tc.by)
		}
	}
	hf, _, _ := parse("kvm1", 0, "--host-config", kvm1)
	if hf.bridge != "br-ex" || hf.tlsCert != "/x/c.pem" || hf.tlsCA != "/x/ca.pem" {
		t.Errorf("the host file's bridge and TLS paths are not the defaults: %+v", hf)
	}
	hf, _, _ = parse("kvm1", 0, "--host-config", kvm1, "--bridge", "cloudbr0", "--tls-cert", "/y/c.pem", "--tls-key", "/y/c.key", "--tls-ca", "/y/ca.pem")
	if hf.bridge != "cloudbr0" || hf.tlsCert != "/y/c.pem" {
		t.Errorf("flags do not override the host file: %+v", hf)
	}
}

// TestHostWatchWaitsForItsHost: `host watch` without --host, started
// before host apply has set the bridge's datapath id, waits (retrying)
// until the datapath id names its host; stopped while waiting it exits 0.
func TestHostWatchWaitsForItsHost(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kvm2.yaml")
	if code, _, errs := hostConfigCLI(t, "--blueprint", demoBP, "--host", "kvm2", "--output-file", p); code != 0 {
		t.Fatal(errs)
	}
	newFlags := func(ctx context.Context, reads *int) (*hostFlags, *flag.FlagSet) {
		hf := &hostFlags{
			hostname: func() (string, error) { return "node-17", nil },
			bridgeDPID: func(context.Context, string, *tls.Config, string) (uint64, error) {
				*reads++
				if *reads < 3 {
					return 0, errors.New("bridge cloudbr0 has no datapath id yet")
				}
				return 0xa2, nil
			},
			waitHost: ctx, waitEvery: time.Millisecond,
		}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		hf.register(fs)
		return hf, fs
	}
	reads := 0
	hf, fs := newFlags(context.Background(), &reads)
	_, h, code := hf.parse("watch", fs, []string{"--host-config", p})
	if code != -1 || h == nil || h.Name != "kvm2" || hf.by != "datapath-id" || reads != 3 {
		t.Fatalf("host %v exit %d by %q after %d reads; want kvm2 by datapath-id after 3", h, code, hf.by, reads)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	reads = -1000 // never the host
	hf, fs = newFlags(ctx, &reads)
	if _, h, code := hf.parse("watch", fs, []string{"--host-config", p}); code != 0 || h != nil {
		t.Fatalf("stopped while waiting: host %v exit %d, want exit 0", h, code)
	}
}
