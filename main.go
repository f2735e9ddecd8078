package main

import (
	"os"

	"github.com/shadowtee/shadowtee/cli"
)

func main() {
	os.Exit(cli.Run(os.Args))
}
