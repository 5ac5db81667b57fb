package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	bi := func(main string, settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/vpcflow/vpcflow", Version: main}}
		for i := 0; i+1 < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	vcs := []string{"vcs.revision", "0123456789abcdef0123456789abcdef01234567", "vcs.time", "2026-12-07T20:56:42Z",
		"CGO_ENABLED", "0", "GOOS", "linux", "GOARCH", "arm64"}
	for _, c := range []struct {
		name                  string
		ldV, ldC, ldD         string
		bi                    *debug.BuildInfo
		version, commit, date string
		platform              string
		cgo                   bool
	}{
		// make build: the linker's values win over the build information.
		{"ldflags", "v1.2.3-4-gabcdef0-dirty", "abcdef0123", "2026-12-08T00:00:00Z", bi("v1.2.3", vcs...),
			"v1.2.3-4-gabcdef0-dirty", "abcdef0123", "2026-12-08T00:00:00Z", "linux/arm64", false},
		// plain go build in a clone: Go's VCS-derived module version.
		{"go build", "", "", "", bi("v0.0.0-20261207205642-0123456789ab+dirty", vcs...),
			"v0.0.0-20261207205642-0123456789ab+dirty", "0123456789abcdef0123456789abcdef01234567", "2026-12-07T20:56:42Z", "linux/arm64", false},
		// no module version (older Go, -buildvcs with no tag support): devel-<hash>.
		{"devel", "", "", "", bi("(devel)", append(vcs, "vcs.modified", "true", "CGO_ENABLED", "1")...),
			"devel-0123456789ab-dirty", "0123456789abcdef0123456789abcdef01234567", "2026-12-07T20:56:42Z", "linux/arm64", true},
		// -buildvcs=false or a source tarball: nothing known.
		{"nothing", "", "", "", bi("(devel)"), Unknown, Unknown, Unknown, "", false},
		{"no build info", "", "", "", nil, Unknown, Unknown, Unknown, "", false},
	} {
		got := resolve(c.ldV, c.ldC, c.ldD, c.bi)
		if got.Version != c.version || got.Commit != c.commit || got.Date != c.date || got.CGO != c.cgo {
			t.Errorf("%s: got %+v, want version %q commit %q date %q cgo %v", c.name, got, c.version, c.commit, c.date, c.cgo)
		}
		if c.platform != "" && got.Platform != c.platform {
			t.Errorf("%s: platform %q, want %q", c.name, got.Platform, c.platform)
		}
		if got.GoVersion == "" || got.Platform == "" {
			t.Errorf("%s: empty Go version or platform: %+v", c.name, got)
		}
	}
}

func TestFeaturesNamed(t *testing.T) {
	f := Features()
	if f.OpenFlow.Version != "1.3" || len(f.OpenFlow.Features) == 0 || f.OVSDB.Version == "" || len(f.Encapsulations) == 0 {
		t.Fatalf("features incomplete: %+v", f)
	}
}
