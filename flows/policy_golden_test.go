package flows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// policyFreeBlueprints are blueprints that use none of the policy keys
// (acls, acl, security_groups): their hashes and flows must not change
// when the policy model is added.
func policyFreeBlueprints(t *testing.T) []string {
	t.Helper()
	files := fixtures(t, "valid-*.yaml")
	files = append(files, demoBlueprint, "../examples/e2e/testdata/vlan-routing.yaml")
	for _, src := range goldenBlueprints {
		files = append(files, src)
	}
	sort.Strings(files)
	// The golden map holds the demo too.
	out := files[:0]
	for i, f := range files {
		if i == 0 || f != files[i-1] {
			out = append(out, f)
		}
	}
	return out
}

const policyFreeGolden = "testdata/golden/policy-free.txt"

// TestPolicyFreeBlueprintsUnchanged proves that a blueprint without the
// policy keys hashes and compiles exactly as before the policy model was
// added: testdata/golden/policy-free.txt was written by the code before it
// (blueprint hash, and a digest of every host's rendered flows).
func TestPolicyFreeBlueprintsUnchanged(t *testing.T) {
	var b strings.Builder
	b.WriteString("# blueprint hash and a sha256 of each host's rendered flows (sorted lines), for blueprints without policy keys\n")
	b.WriteString("# written before the policy model existed; it must never change: go test ./flows/ -run TestPolicyFreeBlueprintsUnchanged -update\n")
	for _, src := range policyFreeBlueprints(t) {
		bp, err := Load(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		fmt.Fprintf(&b, "%s hash %s\n", filepath.ToSlash(src), bp.Hash())
		for _, h := range bp.Hosts {
			fs, err := Compile(bp, h.Name)
			if err != nil {
				t.Fatalf("%s/%s: %v", src, h.Name, err)
			}
			lines := goldenLines(Render(fs, false))
			sort.Strings(lines)
			sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
			fmt.Fprintf(&b, "%s host %s flows %d %s\n", filepath.ToSlash(src), h.Name, len(lines), hex.EncodeToString(sum[:]))
		}
	}
	if *update {
		if err := os.WriteFile(policyFreeGolden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(policyFreeGolden)
	if err != nil {
		t.Fatal(err)
	}
	missing, extra := diffSets(goldenLines(string(data)), goldenLines(b.String()))
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("blueprints without policy keys changed hash or flows:\nwant:\n  %s\ngot:\n  %s", strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
	}
}
