package agentproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// Process is a running agent.
type Process struct {
	Cmd       *exec.Cmd
	ReadyFile string
	exited    chan struct{}
	waitErr   error
}

// Start runs bin with args (and --ready-file) in ns. The process's output
// goes to stdout and stderr.
func Start(ns *sandbox.Netns, bin string, args []string, stdout, stderr io.Writer) (*Process, error) {
	dir, err := os.MkdirTemp("", "shadowtee-agent-")
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(bin, append(args, "--ready-file", ready)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The agent must not outlive whoever started it, even if that one is
	// killed: its kernel hooks would stay behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ns.Start(cmd); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{Cmd: cmd, ReadyFile: ready, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		os.RemoveAll(dir)
		close(p.exited)
	}()
	return p, nil
}

// WaitReady waits for the ready file and returns what it says.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) (agent.Ready, error) {
	var r agent.Ready
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(p.ReadyFile)
		if err == nil {
			return r, json.Unmarshal(b, &r)
		}
		select {
		case <-p.exited:
			return r, fmt.Errorf("agent exited before it was ready: %v", p.waitErr)
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, errors.New("agent not ready in time")
		}
	}
}

// Stop sends SIGTERM and waits for the exit; after timeout it kills the
// process. It returns the exit status.
func (p *Process) Stop(timeout time.Duration) (int, error) {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return -1, fmt.Errorf("agent did not stop within %v after SIGTERM", timeout)
	}
	return p.Cmd.ProcessState.ExitCode(), nil
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }
