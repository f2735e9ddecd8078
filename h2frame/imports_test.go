package h2frame

import (
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/internal/importcheck"
)

// The package imports httpmsg, httpsyntax, x/net and the standard library
// only (doc.go): never the agent, the sender, BPF or the capture, and
// pcapfile, reassembly and httpframe in its tests only.
func TestImports(t *testing.T) {
	project := importcheck.Only("httpmsg", "httpsyntax")
	importcheck.Check(t, func(p string) bool {
		std := !strings.Contains(strings.SplitN(p, "/", 2)[0], ".")
		return std || strings.HasPrefix(p, "golang.org/x/net/") || strings.HasPrefix(p, importcheck.Module) && project(p)
	})
}
