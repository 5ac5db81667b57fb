package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
)

// newLogger builds the process logger: text for a terminal, JSON with
// --log-format json.
func newLogger(format, level string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	switch format {
	case "", "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
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
