package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/flows"
)

const (
	cliAPIKey = "cli-api-key-0123"
	cliSecret = "cli-secret-key-s3cr3t/+="
)

func TestBlueprintExport(t *testing.T) {
	srv := cstest.New(t, "../../cloudstack/testdata/cloud", cliAPIKey, cliSecret)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(keyFile, []byte(cliSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cloud.yaml")
	base := "../../cloudstack/testdata/base.yaml"
	run := func(extra ...string) (int, string, string) {
		args := append([]string{"--source", "cloudstack", "--cloudstack-url", srv.API(), "--cloudstack-base", base,
			"--secret-key-file", keyFile, "--cloudstack-page-size", "2"}, extra...)
		var so, se bytes.Buffer
		code := runBlueprint(append([]string{"export"}, args...), &so, &se)
		for _, s := range append([]string{cliSecret}, srv.Signatures()...) {
			if strings.Contains(so.String()+se.String(), s) {
				t.Errorf("credential %q in the output", s)
			}
		}
		return code, so.String(), se.String()
	}

	// The API key from the environment, the secret from a file.
	t.Setenv("CLOUDSTACK_API_KEY", cliAPIKey)
	code, _, stderr := run("-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "ok (3 hosts, 3 VPCs, 12 VM NICs; 30 CloudStack objects skipped") { // with the fixture's ACL and security group objects left out
		t.Errorf("summary: %s", stderr)
	}
	bp, err := flows.Load(out)
	if err != nil {
		t.Fatalf("the export is not a valid blueprint file: %v", err)
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "#   vm \"red-old\"") || len(bp.Hosts) != 3 {
		t.Errorf("export:\n%s", data)
	}

	// Stdout, same content.
	code, stdout, _ := run()
	if code != 0 || stdout != string(data) {
		t.Errorf("stdout export differs (exit %d)", code)
	}

	// A CloudStack error: exit 1, the error on stderr, no file written.
	srv.Inject(func(command string, page int) cstest.Fault {
		if command == "listVirtualMachines" {
			return cstest.APIError
		}
		return cstest.None
	})
	os.Remove(out)
	if code, _, stderr := run("-o", out); code != 1 || !strings.Contains(stderr, "errorcode 431") {
		t.Errorf("API error: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a file was written despite the error")
	}
	srv.Inject(nil)

	// An invalid result: exit 1 and every error names its CloudStack object.
	srv.Edit("listVirtualMachines", "0f000000-0000-4000-8000-000000000002", func(o map[string]any) {
		o["nic"].([]any)[0].(map[string]any)["ipaddress"] = "10.10.1.11"
	})
	if code, _, stderr := run(); code != 1 || !strings.Contains(stderr, `cloudstack: vm "blue-web-2" (id 0f000000-0000-4000-8000-000000000002) nic 41c00000-0000-4000-8000-000000000002`) {
		t.Errorf("invalid: exit %d, %s", code, stderr)
	}

	// Usage errors.
	t.Setenv("CLOUDSTACK_API_KEY", "")
	if code, _, stderr := run(); code != 2 || !strings.Contains(stderr, "API key is missing") {
		t.Errorf("no api key: exit %d, %s", code, stderr)
	}
	var se bytes.Buffer
	if code := runBlueprint([]string{"export", "--cloudstack-url", srv.API()}, &bytes.Buffer{}, &se); code != 2 || !strings.Contains(se.String(), "--cloudstack-base is required") {
		t.Errorf("no base: exit %d, %s", code, se.String())
	}
}
