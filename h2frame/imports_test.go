package h2frame

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The package imports httpmsg, httpsyntax, x/net and the standard library
// only (doc.go): never the agent, the sender, BPF or the capture, and
// pcapfile, reassembly and httpframe in its tests only.
func TestImports(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case p == "github.com/shadowtee/shadowtee/httpmsg", p == "github.com/shadowtee/shadowtee/httpsyntax":
			case strings.HasPrefix(p, "golang.org/x/net/"):
			case !strings.Contains(strings.SplitN(p, "/", 2)[0], "."):
			default:
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}
