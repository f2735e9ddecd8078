package agent

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/shadowtee/shadowtee/capture"
)

// Ready is the content of the ready file: written once every interface is
// attached and the pipeline runs, so that scripts can wait on it.
type Ready struct {
	PID         int                 `json:"pid"`
	MetricsAddr string              `json:"metrics_addr,omitempty"` // the bound address, useful with port 0
	Interfaces  []capture.Interface `json:"interfaces"`
}

// writeReady writes the file atomically: a reader never sees half of it.
func writeReady(path string, r Ready) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
