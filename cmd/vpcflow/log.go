package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
)

// logTimeFormat is the text logs' timestamp: RFC 3339 with the date,
// milliseconds and the zone offset (2026-12-08T01:45:40.123Z), so lines
// from several days and hosts sort and compare. JSON logs use logrus's
// default, RFC 3339 too.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// newLogger builds the process logger: text for a terminal, JSON with
// --log-format json.
func newLogger(format, level string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	switch format {
	case "", "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: logTimeFormat})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	l.SetLevel(lv)
	return l, nil
}
