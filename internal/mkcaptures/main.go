package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/sink"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkcaptures:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "testdata/captures", "directory to write the edge-case captures and README.md to")
	big := flag.String("big", "", "write one large capture of realistic traffic to this `FILE` instead")
	size := flag.String("size", "1GiB", "approximate size of the -big capture (B, KiB, MiB, GiB)")
	window := flag.Int("window", 44, "most packets a connection of the -big capture sends in a row (44 is 64 KiB of payload; 1 interleaves connections packet by packet)")
	sinkAddr := flag.String("sink", "", "serve HTTP/1.1 on this `ADDR`, answering every request with an empty 200, until SIGINT or SIGTERM")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	switch {
	case *sinkAddr != "":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return sink.Serve(ctx, *sinkAddr, func(addr string) { fmt.Println("sink listening on", addr) })
	case *big != "":
		n, err := config.ParseSize(*size)
		if err == nil && n <= 0 {
			err = fmt.Errorf("size %q: must be positive", *size)
		}
		if err != nil {
			return err
		}
		st, err := writeBig(*big, n, *window)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes, %d packets, %d connections, %d requests\n", *big, st.bytes, st.packets, st.conns, st.requests)
		return nil
	}
	return writeAll(*out)
}

// writeAll writes every case and the README table into dir.
func writeAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, tc := range cases {
		if err := tc.build().write(filepath.Join(dir, tc.file), tc.format); err != nil {
			return fmt.Errorf("%s: %w", tc.file, err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(readme()), 0o644)
}

// recordedMix describes the capture that the end-to-end tests record from
// real traffic; it is listed with the synthesised ones.
var recordedMix = testCase{
	file:   "recorded-mix.pcapng",
	holds:  "recorded by `shadowtee record` on the gateway of the end-to-end topology while Go net/http clients sent keep-alive GETs, a POST, a chunked POST, an IPv6 GET, 3 pipelined raw requests and an HTTP/1.0 GET (client-to-server segments only, Ethernet, nanosecond timestamps)",
	expect: "every request sent (see e2e/testdata_test.go)",
}

func readme() string {
	var b strings.Builder
	b.WriteString(`# Captures for replay tests

Each file here is replayed by ` + "`agent.TestReplayGolden`" + `, which compares the
` + "`shadowtee replay --dry-run`" + ` output with ` + "`testdata/golden/NAME.jsonl`" + ` and checks the
summary counters that the case is about. Every file is rebuilt by ` + "`make testdata`" + `.

The synthesised files are written by ` + "`go run ./internal/mkcaptures -out testdata/captures`" + `
(this table too: edit ` + "`internal/mkcaptures/cases.go`" + `, not this file). They are
deterministic: fixed timestamps from 2025-03-14T09:26:53Z, fixed sequence
numbers, bodies from fixed seeds. Client 198.18.0.1 or fd00::1, server
198.18.0.2:8080 or [fd00::2]:8080, Host shadowing.example, Ethernet unless
the file says otherwise. ` + "`recorded-mix.pcapng`" + ` is recorded from real traffic by
` + "`SHADOWTEE_UPDATE_TESTDATA=1 go test ./e2e -run TestE2ERecordTestdata`" + ` (root).

| file | holds | replay (no --port) must give |
| --- | --- | --- |
`)
	for _, tc := range append(cases[:len(cases):len(cases)], recordedMix) {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", tc.file, tc.holds, tc.expect)
	}
	return b.String()
}
