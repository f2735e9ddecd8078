//go:build nodemo

package cli

import ucli "github.com/urfave/cli/v2"

// demoCommand, in a build without the demo (the container image, built with
// -tags nodemo), says where to find it: the demo's sandbox and its two
// go-httpbin servers have no place on a node.
func demoCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "demo",
		Usage: "not in this build (the container image leaves it out): run the demo from a release binary or `make build`",
		Action: func(*ucli.Context) error {
			return usagef("this build has no demo: it was built with -tags nodemo, as the container image is; `make build` builds one that has it")
		},
	}
}
