package cli

import (
	"bytes"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"shadowtee"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBadInputIsAUsageError(t *testing.T) {
	base := []string{"attach", "--iface", "g0", "--port", "8080", "--shadow", "http://198.18.1.3:8000"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no iface", []string{"attach", "--port", "8080", "--shadow", "http://x:1"}, "--iface is required"},
		{"no port", []string{"attach", "--iface", "g0", "--shadow", "http://x:1"}, "--port is required"},
		{"no shadow", []string{"attach", "--iface", "g0", "--port", "8080"}, "--shadow is required"},
		{"bad port", with("--port", "80a"), `--port "80a"`},
		{"port zero", with("--port", "0"), `--port "0"`},
		{"port too big", with("--port", "70000"), `--port "70000"`},
		{"shadow scheme", []string{"attach", "--iface", "g0", "--port", "1", "--shadow", "ftp://x"}, "--shadow"},
		{"shadow with path", []string{"attach", "--iface", "g0", "--port", "1", "--shadow", "http://x:1/api"}, "path"},
		{"percent over 100", with("--percent", "100.5"), "--percent"},
		{"percent negative", with("--percent", "-1"), "--percent"},
		{"percent junk", with("--percent", "ten"), "--percent"},
		{"sample key", with("--sample-key", "cookie:x"), "--sample-key"},
		{"attach mode", with("--attach-mode", "xdp"), "attach mode"},
		{"ring size not a power of two", with("--ring-size", "3MiB"), "--ring-size"},
		{"ring size junk", with("--ring-size", "big"), "--ring-size"},
		{"max body", with("--max-body", "-5"), "--max-body"},
		{"set header without value", with("--set-header", "X-Shadow"), "NAME=VALUE"},
		{"set header bad name", with("--set-header", "X Shadow=1"), "header"},
		{"empty host literal", with("--host", ""), "--host"},
		{"workers retired", with("--shadow-workers", "4"), "--shadow-max-connections"},
		{"max connections", with("--shadow-max-connections", "0"), "--shadow-max-connections"},
		{"shadow protocol", with("--shadow-protocol", "h3"), "--shadow-protocol"},
		{"host literal", with("--host", "a/b"), "--host"},
		{"unknown flag", with("--shadow-timeoutt", "1s"), "flag provided but not defined"},
		{"log format", with("--log-format", "xml"), "--log-format"},
		{"summary format", with("--summary", "yaml"), "--summary"},
		{"stray argument", with("eth0"), "unexpected argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
		})
	}
}

func TestEnvironmentTwins(t *testing.T) {
	t.Setenv("SHADOWTEE_IFACE", "g0,g1")
	t.Setenv("SHADOWTEE_PORT", "8080,8443")
	t.Setenv("SHADOWTEE_SHADOW", "https://shadow.example:8443")
	t.Setenv("SHADOWTEE_PERCENT", "12.5")
	t.Setenv("SHADOWTEE_SET_HEADER", "X-Shadow=1\nX-Team=a,b")
	t.Setenv("SHADOWTEE_REMOVE_HEADER", "authorization,cookie")
	t.Setenv("SHADOWTEE_SHADOW_TIMEOUT", "3s")
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	cmd := app.Command("attach")
	var got error
	cmd.Action = func(c *ucli.Context) error {
		cfg, err := attachConfig(c)
		if err != nil {
			return err
		}
		switch {
		case strings.Join(cfg.Capture.Interfaces, " ") != "g0 g1":
			t.Errorf("interfaces %v", cfg.Capture.Interfaces)
		case len(cfg.Capture.Ports) != 2 || cfg.Capture.Ports[1] != 8443:
			t.Errorf("ports %v", cfg.Capture.Ports)
		}
		r := cfg.Rules.Rules[0]
		switch {
		case r.Percentage != 12.5:
			t.Errorf("percent %v", r.Percentage)
		case len(r.Headers.Set) != 2 || r.Headers.Set[1].Value != "a,b":
			t.Errorf("set headers %v", r.Headers.Set)
		case strings.Join(r.Headers.Remove, " ") != "authorization cookie":
			t.Errorf("remove headers %v", r.Headers.Remove)
		case r.Shadow.Timeout.String() != "3s":
			t.Errorf("timeout %v", r.Shadow.Timeout)
		case r.Shadow.URL != "https://shadow.example:8443" || len(r.Match.Ports) != 2:
			t.Errorf("rule %+v", r)
		}
		return nil
	}
	got = app.Run([]string{"shadowtee", "attach"})
	if got != nil {
		t.Fatal(got)
	}
}

func TestHelpTeaches(t *testing.T) {
	code, out, _ := runCLI("attach", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--iface", "--port", "--shadow", "--percent", "--attach-mode", "--metrics-addr",
		"--ready-file", "--no-host-suffix", "--host", "--set-header", "--remove-header", "--sample-key",
		"--shadow-max-connections", "--shadow-timeout", "--ordered", "--max-body", "SHADOWTEE_SHADOW", "Example:"} {
		if !strings.Contains(out, want) {
			t.Errorf("attach --help lacks %q", want)
		}
	}
	code, out, _ = runCLI("--help")
	if code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "attach") {
		t.Errorf("--help (exit %d) lists no commands:\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "shadowtee ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}
