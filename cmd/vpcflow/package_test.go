package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// TestPackage builds the .deb the way `make package` does (make package
// BIN=… DIST=…, so the Makefile's flags are what is tested) and checks:
// the binary is static (no ELF interpreter, no shared libraries, no GLIBC
// symbol versions) and carries the version git describes; the package's
// metadata, contents, modes and conffiles; the tree `dpkg -x` extracts
// (its vpcflow version, the example blueprint validates); both units pass
// `systemd-analyze verify` and a sandboxing threshold; the maintainer
// scripts; the packaged controller.yaml is the binary's --print-config;
// and the controller unit's ExecStart line (--config with a copy of the
// packaged controller.yaml), run as systemd would run it, serves its
// version on /status and /metrics.
//
// make package-test runs it alone; make unit runs it with ./cmd/....
// VPCFLOW_PACKAGE_TEST=0 (or -short) skips it.
func TestPackage(t *testing.T) {
	if os.Getenv("VPCFLOW_PACKAGE_TEST") == "0" || testing.Short() {
		t.Skip("VPCFLOW_PACKAGE_TEST=0 or -short")
	}
	for _, tool := range []string{"make", "git", "dpkg-deb", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the package test needs make, git and dpkg (Debian; make deps), or set VPCFLOW_PACKAGE_TEST=0 to skip it", tool)
		}
	}
	top, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin, dist := filepath.Join(tmp, "bin", "vpcflow"), filepath.Join(tmp, "dist")
	t0 := time.Now()
	// gzip: xz costs ~15 s of CPU for the 19 MB binary on the shared CI
	// machine; the compressor is dpkg-deb's business, not ours.
	// BIN relative to the repository, as make's default bin/vpcflow is.
	relBin, err := filepath.Rel(top, bin)
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, top, "env", "DEB_COMPRESS=gzip", "make", "--no-print-directory", "package", "BIN="+relBin, "DIST="+dist)
	t.Logf("make package: %s", time.Since(t0).Round(100*time.Millisecond))
	describe := strings.TrimSpace(run(t, top, "git", "describe", "--tags", "--always", "--dirty"))
	commit := strings.TrimSpace(run(t, top, "git", "rev-parse", "HEAD"))
	count := strings.TrimSpace(run(t, top, "git", "rev-list", "--count", "HEAD"))
	debVersion := strings.TrimSpace(run(t, top, "bash", "scripts/package-deb.sh", "--deb-version", describe, count))
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	wantDeb := filepath.Join(dist, fmt.Sprintf("vpcflow_%s_%s.deb", debVersion, debArch()))
	if len(debs) != 1 || debs[0] != wantDeb || !strings.Contains(out, wantDeb) {
		t.Fatalf("make package made %v, want %s\n%s", debs, wantDeb, out)
	}
	deb := debs[0]

	t.Run("static binary", func(t *testing.T) { checkStatic(t, bin) })
	t.Run("version", func(t *testing.T) { checkVersion(t, bin, describe, commit) })

	t.Run("metadata", func(t *testing.T) {
		info := run(t, "", "dpkg-deb", "-I", deb)
		for _, f := range []string{"Package: vpcflow", "Version: " + debVersion, "Architecture: " + debArch(), "Depends: passwd", "Recommends: openvswitch-switch"} {
			if !strings.Contains(info, "\n "+f+"\n") {
				t.Errorf("dpkg-deb -I: no %q:\n%s", f, info)
			}
		}
		got := strings.Fields(run(t, "", "dpkg-deb", "-I", deb, "conffiles"))
		want := []string{"/etc/vpcflow/blueprint.example.yaml", "/etc/vpcflow/controller.yaml", "/etc/vpcflow/host-watch.env", "/etc/vpcflow/host.example.yaml"}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("conffiles %v, want %v", got, want)
		}
	})

	t.Run("contents", func(t *testing.T) {
		// dpkg-deb -c: mode owner size date time path
		list := map[string]string{}
		for _, line := range strings.Split(run(t, "", "dpkg-deb", "-c", deb), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			list[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
		for path, want := range map[string]string{
			"/usr/bin/vpcflow": "-rwxr-xr-x root/root",
			"/lib/systemd/system/vpcflow-controller.service": "-rw-r--r-- root/root",
			"/lib/systemd/system/vpcflow-host-watch.service": "-rw-r--r-- root/root",
			"/etc/vpcflow/":                        "drwxr-xr-x root/root",
			"/etc/vpcflow/controller.yaml":         "-rw-r--r-- root/root",
			"/etc/vpcflow/host-watch.env":          "-rw-r--r-- root/root",
			"/etc/vpcflow/blueprint.example.yaml":  "-rw-r--r-- root/root",
			"/etc/vpcflow/host.example.yaml":       "-rw-r--r-- root/root",
			"/usr/share/doc/vpcflow/copyright":     "-rw-r--r-- root/root",
			"/usr/share/doc/vpcflow/operations.md": "-rw-r--r-- root/root",
			"/usr/share/doc/vpcflow/upgrade.md":    "-rw-r--r-- root/root",
			"/usr/share/doc/vpcflow/cli.md":        "-rw-r--r-- root/root",
		} {
			if got := list[path]; got != want {
				t.Errorf("%s: %q, want %q", path, got, want)
			}
		}
		// Monitoring (docs/metrics.md): kept apart from the table above.
		for _, path := range []string{"/usr/share/doc/vpcflow/metrics.md", "/usr/share/vpcflow/grafana/vpcflow.json",
			"/usr/share/vpcflow/prometheus/vpcflow-alerts.yaml"} {
			if got := list[path]; got != "-rw-r--r-- root/root" {
				t.Errorf("%s: %q, want %q", path, got, "-rw-r--r-- root/root")
			}
		}
		for path, mode := range list {
			if !strings.HasSuffix(mode, "root/root") {
				t.Errorf("%s owned by %s, want root/root", path, mode)
			}
		}
	})

	root := filepath.Join(tmp, "root")
	run(t, "", "dpkg", "-x", deb, root)
	xbin := filepath.Join(root, "usr/bin/vpcflow")

	t.Run("extracted", func(t *testing.T) {
		checkStatic(t, xbin)
		checkVersion(t, xbin, describe, commit)
		if out, err := exec.Command(xbin, "validate", filepath.Join(root, "etc/vpcflow/blueprint.example.yaml")).CombinedOutput(); err != nil {
			t.Errorf("the packaged example blueprint does not validate: %v\n%s", err, out)
		}
		hc, err := flows.LoadHostConfig(filepath.Join(root, "etc/vpcflow/host.example.yaml"))
		if err != nil || hc.Host.Name != "kvm1" {
			t.Errorf("the packaged example host file: %v %+v", err, hc)
		}
		// The monitoring files are the repository's (controller tests check those).
		for pkgPath, src := range map[string]string{"usr/share/vpcflow/grafana/vpcflow.json": "packaging/grafana/vpcflow.json",
			"usr/share/vpcflow/prometheus/vpcflow-alerts.yaml": "packaging/prometheus/vpcflow-alerts.yaml"} {
			got, err1 := os.ReadFile(filepath.Join(root, pkgPath))
			want, err2 := os.ReadFile(filepath.Join(top, src))
			if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
				t.Errorf("/%s differs from %s (%v, %v)", pkgPath, src, err1, err2)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		for _, c := range []struct {
			unit, env, variable, config string
			want                        []string
		}{
			// The controller reads its configuration file (no EnvironmentFile).
			{"vpcflow-controller.service", "", "", "",
				[]string{"User=vpcflow", "After=network-online.target openvswitch-switch.service",
					"ExecStart=/usr/bin/vpcflow controller --config /etc/vpcflow/controller.yaml", "ExecReload=/bin/kill -HUP $MAINPID"}},
			{"vpcflow-host-watch.service", "host-watch.env", "VPCFLOW_HOST_WATCH_ARGS", "--host-config /etc/vpcflow/host.yaml",
				[]string{"User=root", "Wants=openvswitch-switch.service", "After=openvswitch-switch.service",
					"EnvironmentFile=/etc/vpcflow/host-watch.env", "ExecStart=/usr/bin/vpcflow host watch $VPCFLOW_HOST_WATCH_ARGS"}},
		} {
			u := readUnit(t, filepath.Join(root, "lib/systemd/system", c.unit))
			want := append(c.want, "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
				"CapabilityBoundingSet=", "AmbientCapabilities=", "WantedBy=multi-user.target")
			for _, kv := range want {
				if !slices.Contains(u, kv) {
					t.Errorf("%s: no %q", c.unit, kv)
				}
			}
			for _, kv := range u {
				if strings.HasPrefix(kv, "ReadWritePaths=") || (strings.HasPrefix(kv, "CapabilityBoundingSet=") && kv != "CapabilityBoundingSet=") ||
					(strings.HasPrefix(kv, "AmbientCapabilities=") && kv != "AmbientCapabilities=") {
					t.Errorf("%s: %q: vpcflow writes no file and needs no capability", c.unit, kv)
				}
			}
			if c.env == "" {
				for _, kv := range u {
					if strings.HasPrefix(kv, "EnvironmentFile=") {
						t.Errorf("%s: %q: the controller's flags live in /etc/vpcflow/controller.yaml", c.unit, kv)
					}
				}
				continue
			}
			if v := envValue(t, filepath.Join(root, "etc/vpcflow", c.env), c.variable); v != c.config && !strings.HasPrefix(v, c.config+" ") {
				t.Errorf("%s: %s=%q does not start with %q", c.env, c.variable, v, c.config)
			}
		}
		// The packaged controller.yaml is what the packaged binary's
		// --print-config gives for the packaged settings (every flag).
		want, err := exec.Command(xbin, append([]string{"controller"}, packagedConfigArgs...)...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(root, "etc/vpcflow/controller.yaml")); string(got) != string(want) {
			t.Errorf("the packaged controller.yaml differs from the packaged binary's controller --print-config")
		}
	})

	t.Run("systemd-analyze", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Fatal("systemd-analyze not found: apt-get install systemd (make deps installs it), or set VPCFLOW_PACKAGE_TEST=0")
		}
		// verify wants ExecStart's binary at its path: check copies of the
		// units whose /usr/bin/vpcflow and /etc/vpcflow point into the
		// extracted tree (the file name, which verify needs, is kept).
		dir := filepath.Join(tmp, "units")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, unit := range []string{"vpcflow-controller.service", "vpcflow-host-watch.service"} {
			b, err := os.ReadFile(filepath.Join(root, "lib/systemd/system", unit))
			if err != nil {
				t.Fatal(err)
			}
			s := strings.ReplaceAll(string(b), "/usr/bin/vpcflow", xbin)
			s = strings.ReplaceAll(s, "/etc/vpcflow/", filepath.Join(root, "etc/vpcflow")+"/")
			p := filepath.Join(dir, unit)
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
			// verify exits 0 on warnings (unknown keys, bad values): any
			// output is a failure.
			out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
			// Sandboxing: exposure at most 4.0 of 10 ("OK"); removing any of
			// the options above raises it past that.
			out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=40", p).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security %s: exposure above 4.0: %v\n%s", unit, err, out)
			} else if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out); m != nil {
				t.Logf("%s: exposure %s", unit, m[1])
			}
		}
	})

	t.Run("maintainer scripts", func(t *testing.T) {
		ctrl := filepath.Join(tmp, "control")
		run(t, "", "dpkg-deb", "-e", deb, ctrl)
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			run(t, "", "sh", "-n", filepath.Join(ctrl, s))
		}
		// postinst creates the service user once, with stand-ins for
		// getent and useradd (the machine's users are not touched).
		for _, c := range []struct {
			name        string
			user, group bool
			want        string
		}{
			{"fresh", false, false, "--system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vpcflow"},
			{"group exists", false, true, "--system --gid vpcflow --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vpcflow"},
			{"user exists", true, true, ""},
		} {
			stub := filepath.Join(tmp, "stub-"+strings.ReplaceAll(c.name, " ", "-"))
			if err := os.Mkdir(stub, 0o755); err != nil {
				t.Fatal(err)
			}
			getent := "#!/bin/sh\n"
			if c.user {
				getent += "[ \"$1\" = passwd ] && exit 0\n"
			}
			if c.group {
				getent += "[ \"$1\" = group ] && exit 0\n"
			}
			getent += "exit 2\n"
			writeExec(t, filepath.Join(stub, "getent"), getent)
			writeExec(t, filepath.Join(stub, "useradd"), "#!/bin/sh\necho \"$@\" >> \""+stub+"/useradd.log\"\n")
			writeExec(t, filepath.Join(stub, "systemctl"), "#!/bin/sh\nexit 0\n")
			cmd := exec.Command("sh", filepath.Join(ctrl, "postinst"), "configure")
			cmd.Env = append(os.Environ(), "PATH="+stub+":/usr/bin:/bin")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: postinst configure: %v\n%s", c.name, err, out)
			}
			log, _ := os.ReadFile(filepath.Join(stub, "useradd.log"))
			if got := strings.TrimSpace(string(log)); got != c.want {
				t.Errorf("%s: useradd %q, want %q", c.name, got, c.want)
			}
		}
		// An upgrade from a package whose unit read controller.env converts
		// it once into controller.yaml (in DPKG_ROOT, a temporary root).
		packagedYAML, err := os.ReadFile(filepath.Join(root, "etc/vpcflow/controller.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		oldEnv := `VPCFLOW_CONTROLLER_ARGS="--blueprint /etc/vpcflow/bp.yaml --listen tcp:192.0.2.250:6653 --drift-interval 10s"`
		for _, c := range []struct {
			name, env, old string
			converted      bool
			want           []string
		}{
			{"upgrade", oldEnv, "0.0.1", true, []string{`blueprint: "/etc/vpcflow/bp.yaml"`, `listen: "tcp:192.0.2.250:6653"`, `drift-interval: "10s"`, `#http: "127.0.0.1:9653"`}},
			{"fresh install", oldEnv, "", false, nil},
			{"secret on the command line", `VPCFLOW_CONTROLLER_ARGS="--blueprint /x.yaml --secret-key s3cr3t"`, "0.0.1", false, []string{"WARNING", "--secret-key-file"}},
			{"unknown flag", `VPCFLOW_CONTROLLER_ARGS="--blueprint /x.yaml --no-such-flag 1"`, "0.0.1", false, []string{"WARNING", "no-such-flag"}},
		} {
			dr := filepath.Join(tmp, "dpkgroot-"+strings.ReplaceAll(c.name, " ", "-"))
			etc := filepath.Join(dr, "etc/vpcflow")
			for _, d := range []string{etc, filepath.Join(dr, "usr/bin"), filepath.Join(dr, "stub")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(xbin, filepath.Join(dr, "usr/bin/vpcflow")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(etc, "controller.env"), []byte("# old\n"+c.env+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(etc, "controller.yaml"), packagedYAML, 0o644); err != nil {
				t.Fatal(err)
			}
			writeExec(t, filepath.Join(dr, "stub", "getent"), "#!/bin/sh\nexit 0\n")
			writeExec(t, filepath.Join(dr, "stub", "systemctl"), "#!/bin/sh\nexit 0\n")
			args := []string{filepath.Join(ctrl, "postinst"), "configure"}
			if c.old != "" {
				args = append(args, c.old)
			}
			cmd := exec.Command("sh", args...)
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dr, "stub")+":/usr/bin:/bin", "DPKG_ROOT="+dr)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: postinst configure %s: %v\n%s", c.name, c.old, err, out)
			}
			got, _ := os.ReadFile(filepath.Join(etc, "controller.yaml"))
			_, envErr := os.Stat(filepath.Join(etc, "controller.env"))
			if !c.converted {
				if string(got) != string(packagedYAML) || envErr != nil {
					t.Errorf("%s: controller.yaml changed or controller.env gone (%v)\n%s", c.name, envErr, out)
				}
				for _, w := range c.want {
					if !strings.Contains(string(out), w) {
						t.Errorf("%s: postinst said %q, want %q in it", c.name, out, w)
					}
				}
				continue
			}
			if envErr == nil || !strings.HasPrefix(string(got), "# converted from /etc/vpcflow/controller.env") {
				t.Errorf("%s: not converted (controller.env still there: %v)\n%s\n%s", c.name, envErr == nil, out, got)
			}
			if _, err := os.Stat(filepath.Join(etc, "controller.env.converted")); err != nil {
				t.Errorf("%s: no controller.env.converted: %v", c.name, err)
			}
			for _, w := range c.want {
				if !strings.Contains(string(got), "\n"+w+"\n") {
					t.Errorf("%s: converted controller.yaml has no line %s:\n%s", c.name, w, got)
				}
			}
			if out, err := exec.Command(xbin, "controller", "--config", filepath.Join(etc, "controller.yaml"), "--print-config").CombinedOutput(); err != nil {
				t.Errorf("%s: the converted controller.yaml does not load: %v\n%s", c.name, err, out)
			}
			// A second configure (dpkg-reconfigure) converts nothing more.
			cmd = exec.Command("sh", args...)
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dr, "stub")+":/usr/bin:/bin", "DPKG_ROOT="+dr)
			if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "converted") {
				t.Errorf("%s: second configure: %v %s", c.name, err, out)
			}
		}
	})

	t.Run("controller ExecStart", func(t *testing.T) { runControllerUnit(t, root, xbin, describe, commit, top) })
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func writeExec(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

func debArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

// checkStatic fails if bin is a dynamic executable: an ELF interpreter
// (PT_INTERP), a needed shared library, or a versioned libc symbol (the
// GLIBC_2.34 requirement that kept the binary off EL8 / Ubuntu 20.04). The
// file, ldd and objdump tools, where installed, must agree.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: dynamically linked (build with CGO_ENABLED=0: make build)", bin, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	if syms, _ := f.ImportedSymbols(); len(syms) > 0 {
		var glibc []string
		for _, s := range syms {
			glibc = append(glibc, s.Name+"@"+s.Version)
		}
		t.Errorf("%s imports %d dynamic symbols, e.g. %v", bin, len(syms), glibc[:min(5, len(glibc))])
	}
	if _, err := exec.LookPath("file"); err == nil {
		if out, _ := exec.Command("file", "-b", bin).Output(); !bytes.Contains(out, []byte("statically linked")) {
			t.Errorf("file %s: %s", bin, out)
		}
	}
	if _, err := exec.LookPath("ldd"); err == nil {
		out, err := exec.Command("ldd", bin).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("not a dynamic executable")) {
			t.Errorf("ldd %s: %v %s", bin, err, out)
		}
	}
	if _, err := exec.LookPath("objdump"); err == nil {
		out, _ := exec.Command("objdump", "-T", bin).CombinedOutput()
		if bytes.Contains(out, []byte("GLIBC_")) {
			t.Errorf("objdump -T %s lists GLIBC symbol versions:\n%s", bin, out)
		}
	}
}

// checkVersion runs `version -o json` and `--version`: the version and
// commit are the ones git describes (injected with -ldflags -X).
func checkVersion(t *testing.T, bin, describe, commit string) {
	t.Helper()
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("%s version -o json: %v", bin, err)
	}
	var v struct {
		Version, Commit, Date string
		GoVersion             string `json:"go_version"`
		CGO                   *bool  `json:"cgo"`
		OpenFlow              struct {
			Version  string
			Features []string
		}
		OVSDB struct{ Version string }
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	if v.Version != describe || v.Commit != commit || v.GoVersion != runtime.Version() || v.CGO == nil || *v.CGO {
		t.Errorf("version -o json: %+v, want version %q commit %q %s, cgo false", v, describe, commit, runtime.Version())
	}
	if _, err := time.Parse(time.RFC3339, v.Date); err != nil {
		t.Errorf("build date %q is not RFC 3339: %v", v.Date, err)
	}
	if v.OpenFlow.Version != "1.3" || !slices.Contains(v.OpenFlow.Features, "bundles (ONF atomic commit)") || v.OVSDB.Version != "RFC 7047" {
		t.Errorf("features: %+v", v)
	}
	text, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(text), "vpcflow "+describe+"\ncommit:    "+commit+"\n") ||
		!strings.Contains(string(text), "openflow:  1.3: bundles") {
		t.Errorf("--version: %v\n%s", err, text)
	}
	if err := exec.Command(bin, "version", "-o", "yaml").Run(); exitCode(err) != 2 {
		t.Errorf("version -o yaml: %v, want exit 2", err)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// readUnit returns a unit file's Key=Value lines (comments dropped).
func readUnit(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kv []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		kv = append(kv, line)
	}
	return kv
}

// envValue reads VAR="value" from a systemd EnvironmentFile.
func envValue(t *testing.T, path, name string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	val, found := "", false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && k == name {
			val, found = strings.Trim(v, `"`), true
		}
	}
	if !found {
		t.Fatalf("%s: no %s=", path, name)
	}
	return val
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runControllerUnit runs the controller unit's ExecStart as systemd would:
// --config names a copy of the packaged controller.yaml with the loopback
// test addresses and the demo blueprint. The controller must start, log
// its version, and report it on /status and as vpcflow_build_info.
func runControllerUnit(t *testing.T, root, xbin, describe, commit, top string) {
	u := readUnit(t, filepath.Join(root, "lib/systemd/system/vpcflow-controller.service"))
	var execStart string
	for _, kv := range u {
		if v, ok := strings.CutPrefix(kv, "ExecStart="); ok {
			execStart = v
		}
	}
	packaged := filepath.Join(root, "etc/vpcflow/controller.yaml")
	b, err := os.ReadFile(packaged)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := string(b)
	for _, r := range [][2]string{
		{`blueprint: "/etc/vpcflow/blueprint.yaml"`, fmt.Sprintf("blueprint: %q", filepath.Join(top, "examples/demo/blueprint.yaml"))},
		{`listen: "tcp:127.0.0.1:6653"`, fmt.Sprintf(`listen: "tcp:127.0.0.1:%d"`, freePort(t))},
		{`http: "127.0.0.1:9653"`, fmt.Sprintf("http: %q", httpAddr)},
	} {
		if !strings.Contains(cfg, "\n"+r[0]+"\n") {
			t.Fatalf("the packaged controller.yaml has no line %s: update this test", r[0])
		}
		cfg = strings.Replace(cfg, "\n"+r[0]+"\n", "\n"+r[1]+"\n", 1)
	}
	cfgPath := filepath.Join(t.TempDir(), "controller.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var argv []string
	for _, w := range strings.Fields(execStart) {
		switch {
		case w == "/usr/bin/vpcflow":
			argv = append(argv, xbin)
		case w == "/etc/vpcflow/controller.yaml":
			argv = append(argv, cfgPath)
		case strings.HasPrefix(w, "$") || strings.HasPrefix(w, "/etc/vpcflow"):
			t.Fatalf("ExecStart %q uses %s, which this test does not set", execStart, w)
		default:
			argv = append(argv, w)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var logBuf syncBuffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("controller exit after SIGTERM: %v\n%s", err, logBuf.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("controller did not stop within 20 s of SIGTERM")
		}
	}()
	get := func(path string) (string, error) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + httpAddr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", path, resp.Status)
		}
		return string(b), err
	}
	var status string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if status, err = get("/status"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("controller exited: %v\n%s", err, logBuf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /status within 30 s: %v\n%s", err, logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var st struct{ Version string }
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Version != describe {
		t.Errorf("/status version %q, want %q (%v)", st.Version, describe, err)
	}
	metrics, err := get("/metrics")
	want := fmt.Sprintf(`vpcflow_build_info{commit=%q,goversion=%q,version=%q} 1`, commit, runtime.Version(), describe)
	if err != nil || !strings.Contains(metrics, want) {
		t.Errorf("/metrics: %v; no %s", err, want)
	}
	if l := logBuf.String(); !regexp.MustCompile(`msg="controller started".* version=` + regexp.QuoteMeta(describe)).MatchString(l) {
		t.Errorf("no version in the start line:\n%s", l)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
