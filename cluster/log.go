package cluster

import (
	"bytes"
	"io"
	"log"
	"strings"

	"github.com/sirupsen/logrus"
)

// logWriter routes memberlist's *log.Logger output ("[WARN] memberlist: …")
// to logrus at debug level, keeping memberlist's own level as a field.
type logWriter struct{ l logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte{'\n'}) {
		s := string(line)
		lvl := ""
		if strings.HasPrefix(s, "[") {
			if i := strings.IndexByte(s, ']'); i > 0 {
				lvl, s = strings.ToLower(s[1:i]), strings.TrimSpace(s[i+1:])
			}
		}
		s = strings.TrimPrefix(s, "memberlist: ")
		e := w.l
		if lvl != "" {
			e = e.WithField("memberlist_level", lvl)
		}
		e.Debug(s)
	}
	return len(p), nil
}

func newStdLogger(l logrus.FieldLogger) *log.Logger {
	var w io.Writer = logWriter{l: l.WithField("component", "memberlist")}
	return log.New(w, "", 0)
}
