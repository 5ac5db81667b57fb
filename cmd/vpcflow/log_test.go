package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

// TestLogTimestamps: text logs carry an RFC 3339 timestamp with the date
// and milliseconds; JSON logs an RFC 3339 "time".
func TestLogTimestamps(t *testing.T) {
	l, err := newLogger("text", "info")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l.SetOutput(&buf)
	l.Info("hello")
	m := regexp.MustCompile(`^time="([^"]+)" level=info msg=hello\n$`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("text log line: %q", buf.String())
	}
	ts, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`).MatchString(m[1]) {
		t.Fatalf("timestamp %q is not RFC 3339 with date and milliseconds: %v", m[1], err)
	}
	if d := time.Since(ts); d < -time.Minute || d > time.Minute {
		t.Errorf("timestamp %q is %s away from now", m[1], d)
	}

	l, err = newLogger("json", "info")
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	l.SetOutput(&buf)
	l.Info("hello")
	var doc struct{ Time string }
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, doc.Time); err != nil {
		t.Errorf("json time %q: %v", doc.Time, err)
	}
	if _, err := newLogger("xml", "info"); err == nil {
		t.Error("--log-format xml accepted")
	}
}
