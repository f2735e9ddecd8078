package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/config"
)

func checkConfigCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "check-config",
		Usage:     "validate a rules file without attaching anything",
		UsageText: "shadowtee check-config FILE",
		Description: `Parses and checks the rules file as 'attach --config FILE' would, prints every
problem with its line and what to write instead, and exits 1 if there is any; on
success it lists the rules and what the kernel filter will copy.`,
		Action: func(c *ucli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("check-config takes one argument: the rules file")
			}
			path := c.Args().First()
			f, err := config.Load(path)
			if err != nil {
				return ucli.Exit(err.Error(), exitFailure)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%s: %d rule(s), ok\n", path, len(f.Rules))
			for _, r := range f.Rules {
				fmt.Fprintf(w, "  %s: ports %v", r.Name, r.Match.Ports)
				if len(r.Match.Hosts) > 0 {
					fmt.Fprintf(w, ", hosts %s", strings.Join(r.Match.Hosts, " "))
				}
				fmt.Fprintf(w, " -> %s (%v%%)\n", r.Shadow.URL, r.Percentage)
			}
			fmt.Fprintf(w, "kernel filter: ports %v", f.Ports())
			if d := f.Destinations(); len(d) > 0 {
				fmt.Fprintf(w, ", destinations %v", d)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
}
