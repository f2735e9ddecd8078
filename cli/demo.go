//go:build !nodemo

package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"
	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

func demoCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "demo",
		Usage:     "watch shadowtee mirror real requests in a throwaway sandbox (needs root)",
		UsageText: "sudo shadowtee demo [--attach-mode auto|tcx|tc]",
		Description: `Builds three network namespaces joined by veth pairs, with no route out:

  client 198.18.0.1 --- g0 198.18.0.2 gateway 198.18.1.2 --- 198.18.1.3 shadow

The gateway runs go-httpbin on :8080 (the primary) and the shadow host runs
another go-httpbin on :8000. The demo attaches the tee to g0, sends a mix of real
requests from the client, shows side by side what the primary and the shadow
received, prints the tee's summary, and removes everything it made, also when
interrupted with Ctrl-C.`,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "attach-mode", Value: "auto", Usage: "auto, tcx or tc", EnvVars: env("ATTACH_MODE")},
		},
		Action: runDemo,
	}
}

// demoRequest is one request the demo client sends.
type demoRequest struct {
	label string
	send  func(ctx context.Context, c *http.Client, dial dialFunc) error
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func runDemo(c *ucli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo(ctx, c)
	if err != nil && ctx.Err() != nil {
		return ucli.Exit("interrupted; the sandbox was removed", 130)
	}
	return err
}

func demo(ctx context.Context, c *ucli.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces and loads a BPF program: run it as root (sudo shadowtee demo)")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	out := c.App.Writer

	fmt.Fprintln(out, "Building the sandbox: client --- gateway (primary :8080, tee on g0) --- shadow (:8000)")
	topo, err := sandbox.NewTopology("stee-demo")
	if err != nil {
		return fmt.Errorf("build the sandbox: %w", err)
	}
	defer func() {
		if err := topo.Close(); err != nil {
			fmt.Fprintln(c.App.ErrWriter, "shadowtee: clean up:", err)
		} else {
			fmt.Fprintln(out, "Sandbox removed.")
		}
	}()

	primary := recorder.New(httpbin.New())
	shadowed := recorder.New(httpbin.New())
	stopPrimary, err := serveIn(topo.Gateway, "[::]:8080", primary)
	if err != nil {
		return err
	}
	defer stopPrimary()
	stopShadow, err := serveIn(topo.Shadow, sandbox.ShadowIPv4+":8000", shadowed)
	if err != nil {
		return err
	}
	defer stopShadow()

	var agentOut bytes.Buffer
	args := []string{"attach", "--iface", sandbox.GatewayIface, "--port", "8080",
		"--shadow", "http://" + sandbox.ShadowIPv4 + ":8000", "--attach-mode", c.String("attach-mode"),
		"--stats-interval", "0", "--drain-timeout", "2s", "--log-format", "text", "--log-level", "warn"}
	proc, err := agentproc.Start(topo.Gateway, exe, args, &agentOut, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer func() {
		select {
		case <-proc.Exited():
		default:
			proc.Kill()
		}
	}()
	ready, err := proc.WaitReady(ctx, 15*time.Second)
	if err != nil {
		return err
	}
	for _, i := range ready.Interfaces {
		fmt.Fprintf(out, "Tee attached to %s (%s).\n\n", i.Name, i.Mode)
	}

	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: topo.Client.DialContext},
	}
	reqs := demoRequests()
	for _, r := range reqs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := r.send(ctx, client, topo.Client.DialContext); err != nil {
			return fmt.Errorf("%s: %w", r.label, err)
		}
	}
	want := primary.Len()
	if !shadowed.Wait(ctx, want, 5*time.Second) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(out, "Only %d of %d requests reached the shadow in 5s.\n", shadowed.Len(), want)
	}
	printSideBySide(out, primary.Requests(), shadowed.Requests())

	fmt.Fprintln(out, "\nStopping the tee (SIGTERM); its summary:")
	if code, err := proc.Stop(10 * time.Second); err != nil || code != 0 {
		return fmt.Errorf("the tee exited with status %d: %v", code, err)
	}
	out.Write(agentOut.Bytes())
	return nil
}

func demoRequests() []demoRequest {
	base := "http://" + sandbox.GatewayIPv4 + ":8080"
	do := func(method, url, host string, body io.Reader, n int64) func(context.Context, *http.Client, dialFunc) error {
		return func(ctx context.Context, c *http.Client, _ dialFunc) error {
			req, err := http.NewRequestWithContext(ctx, method, url, body)
			if err != nil {
				return err
			}
			req.Host = host
			req.ContentLength = n
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			return err
		}
	}
	payload := `{"release":"v2","note":"mirrored by shadowtee"}`
	return []demoRequest{
		{"GET /get", do("GET", base+"/get", "shadowing.example", nil, 0)},
		{"GET /headers with a port in Host", do("GET", base+"/headers", "shadowing.example:8080", nil, 0)},
		{"POST /post", do("POST", base+"/post", "shadowing.example", strings.NewReader(payload), int64(len(payload)))},
		{"chunked POST /anything", do("POST", base+"/anything/chunked", "shadowing.example", io.MultiReader(strings.NewReader(payload)), -1)},
		{"GET over IPv6", do("GET", "http://["+sandbox.GatewayIPv6+"]:8080/ip", "shadowing.example", nil, 0)},
		{"two pipelined GETs", rawExchange(
			"GET /anything/pipelined/1 HTTP/1.1\r\nHost: shadowing.example\r\n\r\n"+
				"GET /anything/pipelined/2 HTTP/1.1\r\nHost: shadowing.example\r\nConnection: close\r\n\r\n", 2)},
		{"HTTP/1.0 without Host", rawExchange("GET /anything/http10 HTTP/1.0\r\n\r\n", 1)},
	}
}

// rawExchange writes raw bytes on one connection and reads n responses.
func rawExchange(raw string, n int) func(context.Context, *http.Client, dialFunc) error {
	return func(ctx context.Context, _ *http.Client, dial dialFunc) error {
		conn, err := dial(ctx, "tcp", sandbox.GatewayIPv4+":8080")
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, raw); err != nil {
			return err
		}
		br := bufio.NewReader(conn)
		for range n {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil
	}
}

func serveIn(ns *sandbox.Netns, addr string, h http.Handler) (func(), error) {
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", addr, ns.Name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// printSideBySide pairs each primary request with its mirror.
func printSideBySide(w io.Writer, primary, mirrored []recorder.Request) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tREQUEST\tPRIMARY SAW HOST\tSHADOW SAW HOST\tBODY\tMIRRORED")
	used := make([]bool, len(mirrored))
	for i, p := range primary {
		shadowHost, ok := "-", "no"
		for j, m := range mirrored {
			if !used[j] && m.Method == p.Method && m.Target == p.Target && m.BodySHA256 == p.BodySHA256 {
				used[j], shadowHost, ok = true, m.Host, "yes, body identical"
				break
			}
		}
		host := p.Host
		if p.Proto == "HTTP/1.0" && p.Header.Get("Host") == "" && host == "" {
			host = "(none)"
		}
		fmt.Fprintf(tw, "%d\t%s %s %s\t%s\t%s\t%d B\t%s\n", i+1, p.Method, p.Target, p.Proto, host, shadowHost, p.BodyLen, ok)
	}
	tw.Flush()
}
