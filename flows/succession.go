package flows

import (
	"fmt"
	"os"
)

// FileStamp identifies a file's version by modification time and size: the
// blueprint file watchers (controller and `host watch`) reload when it
// changes. A file that cannot be read has a stamp naming the error.
func FileStamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "error:" + err.Error()
	}
	return fmt.Sprintf("%d/%d", st.ModTime().UnixNano(), st.Size())
}

// CheckSuccessor applies the reload rule shared by the controller and the
// host watcher to a blueprint next that would replace one with revision
// curRev and hash curHash: the same content is always fine; otherwise a
// lower revision, or the same non-zero revision with other content, is
// refused (raise revision for every change; revision 0 accepts any valid
// change). The error names no file: callers prefix their source.
func CheckSuccessor(curRev uint32, curHash string, next *Blueprint) error {
	switch {
	case next.Hash() == curHash:
		return nil
	case next.Revision < curRev:
		return fmt.Errorf("revision %d is older than the revision in force %d: raise revision to apply it", next.Revision, curRev)
	case next.Revision == curRev && next.Revision != 0:
		return fmt.Errorf("revision %d has different content than the blueprint in force with the same revision: raise revision to apply it", next.Revision)
	}
	return nil
}
