package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/examples/lab"
)

// cli runs vpcflow in the management namespace: stdout, stderr, exit code.
func (e *env) cli(args ...string) (string, string, int) {
	e.t.Helper()
	argv := append([]string{"netns", "exec", e.lab.MgmtNS(), vpcflowBin}, args...)
	cmd := exec.CommandContext(e.ctx, "ip", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.t.Fatalf("vpcflow %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// decodeDoc decodes a JSON or YAML document into v by its JSON keys (YAML
// is decoded generically, then read as JSON: -o yaml must carry the JSON
// document's keys).
func decodeDoc(out string, v any) error {
	var doc any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		return err
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// TestCLIOutputFormats: against a running controller and real switches,
// status and audit print the same document as JSON (-o json, and the
// deprecated --json/--format spellings) and as YAML (-o yaml, a flag given
// after the others), and the exit code follows the finding, not the format:
// 0 in sync, 1 drift in table, json and yaml alike.
func TestCLIOutputFormats(t *testing.T) {
	e := startEnv(t, demoBlueprint(t, nil), "--drift-interval", "1h")
	ctl := []string{"--controller", lab.ControllerURL}

	var st controller.Status
	for _, args := range [][]string{{"status", "-o", "json"}, {"status", "--json"}, {"status", "-o", "yaml"}, {"status", "--output=yaml"}} {
		out, errOut, code := e.cli(append(args, ctl...)...)
		var got controller.Status
		if err := decodeDoc(out, &got); code != 0 || err != nil {
			t.Fatalf("vpcflow %q: exit %d, %v\n%s%s", args, code, err, out, errOut)
		}
		if len(got.Bridges) != 3 {
			t.Fatalf("vpcflow %q: %d bridges, want 3:\n%s", args, len(got.Bridges), out)
		}
		for _, b := range got.Bridges {
			if !b.Converged || b.DatapathID == "" || b.FlowsIntended == 0 {
				t.Errorf("vpcflow %q: bridge %+v", args, b)
			}
		}
		st = got
	}
	t.Logf("status -o yaml: %d bridges, revision %d", len(st.Bridges), st.Revision)

	audits := [][]string{{"audit"}, {"audit", "-o", "json"}, {"audit", "--format", "json"}, {"audit", "-o", "yaml"}, {"audit", "--host", "kvm2", "-o", "yaml"}}
	runAudit := func(args []string) (*controller.AuditReport, int) {
		t.Helper()
		out, errOut, code := e.cli(append(args[:1:1], append(ctl, args[1:]...)...)...)
		if len(args) == 1 { // table
			return nil, code
		}
		var rep controller.AuditReport
		if err := decodeDoc(out, &rep); err != nil || !rep.Complete || len(rep.Bridges) == 0 {
			t.Fatalf("vpcflow %q: exit %d, complete %v, %d bridges, %v\n%s%s", args, code, rep.Complete, len(rep.Bridges), err, out, errOut)
		}
		if rep.InSync != (code == 0) {
			t.Fatalf("vpcflow %q: exit %d but in_sync %v", args, code, rep.InSync)
		}
		return &rep, code
	}
	for _, args := range audits {
		if _, code := runAudit(args); code != 0 {
			t.Fatalf("fresh lab: vpcflow %q: exit %d, want 0 (in sync)", args, code)
		}
	}

	// A foreign flow behind the controller's back: drift, exit 1 in every
	// format. (It is added again before each audit: an audit may repair.)
	for _, args := range audits {
		if _, err := e.lab.OVS(e.ctx, "kvm2", "ovs-ofctl", "add-flow", lab.Bridge, "table=70,priority=500,reg0=0x1389,actions=drop"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, code := runAudit(args)
			if code == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("vpcflow %q did not report the foreign flow (exit %d, want 1)", args, code)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Cannot tell: an unreachable controller is exit 2 in every format.
	for _, f := range []string{"table", "json", "yaml"} {
		if _, errOut, code := e.cli("audit", "--controller", "http://127.0.0.1:1", "-o", f); code != 2 {
			t.Errorf("audit -o %s, unreachable controller: exit %d, want 2: %s", f, code, errOut)
		}
	}
}
