package config

import (
	"testing"

	"github.com/shadowtee/shadowtee/internal/importcheck"
)

// TestImports keeps config a leaf: rules are data, read by the agent, the
// sender and the framers, and config imports none of them.
func TestImports(t *testing.T) {
	importcheck.Check(t, importcheck.Only("httpmsg", "httpsyntax"))
}
