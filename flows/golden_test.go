package flows

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenBlueprints are the blueprints with golden flow dumps under
// testdata/golden/<name>/<host>.flows.
var goldenBlueprints = map[string]string{
	"demo":       demoBlueprint,
	"gre-peers":  "testdata/golden/gre-peers.yaml",
	"empty-host": "testdata/golden/empty-host.yaml",
	"bond":       "testdata/golden/bond.yaml",
}

// goldenLines returns the rendered flow lines (no comments, no blanks).
func goldenLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func goldenHeader(name, src, host string) string {
	return "# golden flows of host " + host + " compiled from " + src + "\n" +
		"# compared as an unordered set of lines; regenerate with: go test ./flows/ -run TestGolden -update\n"
}

// TestGolden compares every host's compiled flows (ovs-ofctl syntax) with
// the golden dumps, as unordered sets of lines.
func TestGolden(t *testing.T) {
	for name, src := range goldenBlueprints {
		bp, err := Load(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dir := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range bp.Hosts {
			fs, err := Compile(bp, h.Name)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, h.Name, err)
			}
			rendered := Render(fs, false)
			path := filepath.Join(dir, h.Name+".flows")
			if *update {
				if err := os.WriteFile(path, []byte(goldenHeader(name, src, h.Name)+rendered), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s/%s: %v (run go test ./flows/ -run TestGolden -update)", name, h.Name, err)
			}
			missing, extra := diffSets(goldenLines(string(data)), goldenLines(rendered))
			if len(missing) > 0 || len(extra) > 0 {
				t.Errorf("%s/%s differs from %s (if intended, run go test ./flows/ -run TestGolden -update)\nmissing (in golden, not compiled):\n  %s\nextra (compiled, not in golden):\n  %s",
					name, h.Name, path, strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
			}
		}
	}
}

// diffSets returns the lines of want not in got and of got not in want
// (multiset semantics: a duplicated line counts twice).
func diffSets(want, got []string) (missing, extra []string) {
	count := map[string]int{}
	for _, l := range want {
		count[l]++
	}
	for _, l := range got {
		count[l]--
	}
	for l, n := range count {
		for ; n > 0; n-- {
			missing = append(missing, l)
		}
		for ; n < 0; n++ {
			extra = append(extra, l)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func TestDiffSets(t *testing.T) {
	m, e := diffSets([]string{"a", "b", "b", "c"}, []string{"c", "b", "a", "d"})
	if strings.Join(m, ",") != "b" || strings.Join(e, ",") != "d" {
		t.Errorf("diffSets = %v, %v", m, e)
	}
}

// TestGoldenFixturesIsolate runs the isolation proof on the golden
// fixtures too (GRE with trusted peers, a host without VMs).
func TestGoldenFixturesIsolate(t *testing.T) {
	for name, src := range goldenBlueprints {
		bp, err := Load(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := checkIsolation(t, newCloud(t, bp), isolationOptions{}); n > 0 {
			t.Errorf("%s: %d isolation failures", name, n)
		}
	}
}
