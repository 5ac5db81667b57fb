package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Time limits of process handling.
const (
	// stopGrace is how long Stop waits after the stop signal before SIGKILL.
	stopGrace = 5 * time.Second
	// waitDelay bounds how long a finished command's output pipes are drained.
	waitDelay = 2 * time.Second
	// pollEvery is the polling interval of every readiness wait.
	pollEvery = 10 * time.Millisecond
)

// Proc is a background process the lab started in a namespace.
type Proc struct {
	// Pid is the process id (`ip netns exec` execs the command, so this is
	// the command's own pid).
	Pid int
	// Name names the process in logs and errors.
	Name string
	// NS is the namespace it runs in.
	NS string
	// LogFile receives its stdout and stderr.
	LogFile string

	cmd      *exec.Cmd
	stopSig  syscall.Signal
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
	lab      *Lab
	errFile  string // separate stderr file (captures), else ""
}

// StartProcess starts argv in the background inside namespace ns ("" = the
// root namespace), appending its stdout and stderr to logFile (default
// Dir/<name>.log). Down stops it if it is still running.
func (l *Lab) StartProcess(ns, name string, logFile string, argv ...string) (*Proc, error) {
	return l.startProcess(ns, name, logFile, "", nil, syscall.SIGTERM, argv...)
}

func (l *Lab) startProcess(ns, name, logFile, errFile string, env []string, sig syscall.Signal, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: process %s: empty command", name)
	}
	l.mu.Lock()
	down := l.down
	l.mu.Unlock()
	if down {
		return nil, fmt.Errorf("lab: process %s: lab %s is down", name, l.prefix)
	}
	if logFile == "" {
		logFile = filepath.Join(l.dir, name+".log")
	}
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: process %s: log file: %w", name, err)
	}
	defer out.Close()
	full := nsArgv(ns, argv)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	cmd.Stderr = out
	if errFile != "" {
		ef, err := os.OpenFile(errFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lab: process %s: stderr file: %w", name, err)
		}
		defer ef.Close()
		cmd.Stderr = ef
	}
	// Own process group: a terminal's Ctrl-C reaches the demo, which then
	// stops its processes in order, instead of killing them all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, cmdError(full, nil, err)
	}
	p := &Proc{
		Pid: cmd.Process.Pid, Name: name, NS: ns, LogFile: logFile,
		cmd: cmd, stopSig: sig, done: make(chan struct{}), lab: l, errFile: errFile,
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.log.WithFields(map[string]any{"proc": name, "pid": p.Pid, "ns": ns}).Debug("started")
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process is still running.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits for the process to exit and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// Stop sends the process its stop signal (SIGTERM; SIGINT for ping and
// tcpdump, so they print their summary), waits up to 5 s, then SIGKILLs it.
// It is idempotent and returns nil once the process is gone, whatever its
// exit status.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(p.stopSig) })
	return p.stopErr
}

// Kill SIGKILLs the process and waits for it.
func (p *Proc) Kill() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(syscall.SIGKILL) })
	return p.stopErr
}

func (p *Proc) stop(sig syscall.Signal) error {
	defer p.forget()
	if !p.Running() {
		return nil
	}
	if err := syscall.Kill(p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("lab: signal %s (pid %d): %w", p.Name, p.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		return fmt.Errorf("lab: %s (pid %d) survived SIGKILL for %s", p.Name, p.Pid, stopGrace)
	}
}

// forget drops the process from the lab's list once it is gone.
func (p *Proc) forget() {
	if p.lab == nil {
		return
	}
	l := p.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range l.procs {
		if q == p {
			l.procs = append(l.procs[:i], l.procs[i+1:]...)
			break
		}
	}
}

// Log returns what the process has written to its log file so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogFile)
	return string(b)
}

// waitLog polls the process's log (and stderr file) until it contains want,
// the process exits, or ctx ends.
func (p *Proc) waitLog(ctx context.Context, want string) error {
	for {
		text := p.Log()
		if p.errFile != "" {
			b, _ := os.ReadFile(p.errFile)
			text += string(b)
		}
		if strings.Contains(text, want) {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("lab: %s exited before it was ready (%v): %s", p.Name, p.waitErr, strings.TrimSpace(text))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not ready (no %q in its output): %w: %s", p.Name, want, ctx.Err(), strings.TrimSpace(text))
		case <-time.After(pollEvery):
		}
	}
}

// pidAlive reports whether pid is a live (non-zombie) process.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 is the state, after the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// PidAlive reports whether pid is a live, non-zombie process (for tests
// that check Down left nothing running).
func PidAlive(pid int) bool { return pidAlive(pid) }

// killPid stops a process the lab did not fork itself (a detached daemon):
// SIGTERM, poll until gone, then SIGKILL.
func killPid(ctx context.Context, pid int, name string) error {
	if !pidAlive(pid) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("lab: SIGTERM %s (pid %d): %w", name, pid, err)
	}
	if waitGone(ctx, pid, stopGrace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(ctx, pid, stopGrace) {
		return nil
	}
	return fmt.Errorf("lab: %s (pid %d) survived SIGKILL for %s", name, pid, stopGrace)
}

func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for pidAlive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return !pidAlive(pid)
		}
		time.Sleep(pollEvery)
	}
	return true
}

// readPidfile reads an OVS pidfile.
func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s: bad content %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}
