package ovsbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpcflow/vpcflow/controller"
)

// BuildTools builds bench/ctl (the controller wrapper) into dir and returns
// its path. Run from the module root.
func BuildTools(dir string) (string, error) {
	bin := filepath.Join(dir, "vpcflow-bench-ctl")
	if out, err := exec.Command("go", "build", "-o", bin, "./bench/ctl").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./bench/ctl: %v\n%s", err, out)
	}
	return bin, nil
}

// Ctl is a running controller (bench/ctl) inside the switch's namespace.
type Ctl struct {
	Pid     int
	LogPath string
	Sock    string
	cmd     *exec.Cmd
	done    chan struct{}
	client  *http.Client
}

// StartCtl starts the controller wrapper with the blueprint, listening on
// tcp:127.0.0.1:port inside the namespace. extra are more flags.
func (s *Switch) StartCtl(bin, blueprint string, port int, logPath string, extra ...string) (*Ctl, error) {
	sock := filepath.Join(s.Dir, fmt.Sprintf("ctl-%d.sock", port))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	args := append([]string{bin, "-blueprint", blueprint, "-listen", fmt.Sprintf("tcp:127.0.0.1:%d", port), "-sock", sock}, extra...)
	cmd := s.Command(args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Ctl{Pid: cmd.Process.Pid, LogPath: logPath, Sock: sock, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := c.Status(); err == nil {
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("controller exited at start; log %s:\n%s", logPath, tailFile(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("controller not ready within 60s; log %s", logPath)
		}
	}
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	return tail(string(b), 2000)
}

// Running reports whether the process is alive.
func (c *Ctl) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILL; it is idempotent.
func (c *Ctl) Stop() {
	if !c.Running() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Kill stops the controller with SIGKILL (a crash).
func (c *Ctl) Kill() {
	if c.Running() {
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// HUP sends SIGHUP (reload the blueprint now).
func (c *Ctl) HUP() error { return c.cmd.Process.Signal(syscall.SIGHUP) }

// Status reads the controller's status.
func (c *Ctl) Status() (*controller.Status, error) {
	resp, err := c.client.Get("http://ctl/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st controller.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Goroutines reads the controller process's goroutine count.
func (c *Ctl) Goroutines() int {
	resp, err := c.client.Get("http://ctl/goroutines")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// SaveHeap writes the current heap profile to path.
func (c *Ctl) SaveHeap(path string) error {
	resp, err := c.client.Get("http://ctl/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// CPUSeconds is utime+stime of the process from /proc/PID/stat.
func (c *Ctl) CPUSeconds() float64 { return ProcCPU(c.Pid) }

// ProcCPU is utime+stime of pid in seconds (0 if unreadable).
func ProcCPU(pid int) float64 { return statCPU(fmt.Sprintf("/proc/%d/stat", pid)) }

// MainThreadCPU is utime+stime of pid's main thread only (for
// ovs-vswitchd: the thread that handles OpenFlow), in seconds.
func MainThreadCPU(pid int) float64 { return statCPU(fmt.Sprintf("/proc/%d/task/%d/stat", pid, pid)) }

func statCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// ProcMemKB returns VmRSS and VmHWM of pid in KiB.
func ProcMemKB(pid int) (rss, hwm int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		var p *int
		switch {
		case strings.HasPrefix(l, "VmRSS:"):
			p = &rss
		case strings.HasPrefix(l, "VmHWM:"):
			p = &hwm
		default:
			continue
		}
		fs := strings.Fields(l)
		if len(fs) >= 2 {
			*p, _ = strconv.Atoi(fs[1])
		}
	}
	return rss, hwm
}

// LogLine is one JSON log line of the controller.
type LogLine struct {
	Time   time.Time
	Msg    string
	Fields map[string]any
}

// Str returns a string field.
func (l *LogLine) Str(k string) string {
	v, _ := l.Fields[k].(string)
	return v
}

// Num returns a numeric field.
func (l *LogLine) Num(k string) float64 {
	v, _ := l.Fields[k].(float64)
	return v
}

// ReadLog parses the controller's JSON log from byte offset off; it returns
// the lines and the new offset.
func ReadLog(path string, off int64) ([]LogLine, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, err
	}
	var out []LogLine
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // partial last line: read again later
		}
		off += int64(len(line))
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		ll := LogLine{Fields: m}
		ll.Msg, _ = m["msg"].(string)
		if ts, ok := m["time"].(string); ok {
			ll.Time, _ = time.Parse(time.RFC3339Nano, ts)
		}
		out = append(out, ll)
	}
	return out, off, nil
}

// Size is the current size of a file (0 if missing).
func Size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogTail follows a controller log.
type LogTail struct {
	Path  string
	Off   int64
	Lines []LogLine // every line read so far
}

// NewLogTail starts following path at its current end.
func NewLogTail(path string) *LogTail { return &LogTail{Path: path, Off: Size(path)} }

// Poll reads new lines and returns them.
func (t *LogTail) Poll() []LogLine {
	ls, off, err := ReadLog(t.Path, t.Off)
	if err != nil {
		return nil
	}
	t.Off = off
	t.Lines = append(t.Lines, ls...)
	return ls
}

// Wait polls until done (called with every new line) returns true, or the
// timeout passes.
func (t *LogTail) Wait(ctx context.Context, timeout time.Duration, what string, done func(*LogLine) bool) error {
	return t.WaitEvery(ctx, timeout, 5*time.Millisecond, what, done)
}

// WaitEvery is Wait reading the log every interval. Latencies come from the
// lines' own timestamps, so a longer interval only delays the return, and
// it keeps the bench's reads from competing with what it measures.
func (t *LogTail) WaitEvery(ctx context.Context, timeout, every time.Duration, what string, done func(*LogLine) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range t.Poll() {
			l := l
			if done(&l) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (log %s)", timeout, what, t.Path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// StartCPUProfile asks the controller for a CPU profile of the next d and
// writes it to path when it arrives; wait returns the outcome.
func (c *Ctl) StartCPUProfile(path string, d time.Duration) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		cl := *c.client
		cl.Timeout = d + 30*time.Second
		resp, err := cl.Get(fmt.Sprintf("http://ctl/debug/pprof/profile?seconds=%d", int(d.Seconds()+0.5)))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return func() error { return <-done }
}
