package config

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps config a leaf: rules are data, read by the agent, the
// sender and the framers, and config imports none of them.
func TestImports(t *testing.T) {
	const module = "github.com/shadowtee/shadowtee/"
	allowed := map[string]bool{module + "httpmsg": true, module + "httpsyntax": true}
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if (strings.HasPrefix(p, module) && !allowed[p]) || strings.HasPrefix(p, "github.com/cilium/") {
				t.Errorf("%s imports %s: only httpmsg and httpsyntax of the project may be imported", n, p)
			}
		}
	}
}
