package agent

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/shadow"
)

// mirror is the back half of the pipeline: it decides which framed requests
// are mirrored and sends them. It is shared by every shard.
type mirror struct {
	sampler *shadow.Sampler
	sender  *shadow.Sender
	framing httpframe.Stats
	shadow  shadow.Stats
}

func newMirror(cfg MirrorConfig) (*mirror, error) {
	m := &mirror{}
	var err error
	if m.sampler, err = shadow.NewSampler(cfg.Percent, cfg.SampleKey); err != nil {
		return nil, err
	}
	rw, err := shadow.NewRewriter(cfg.Rewrite)
	if err != nil {
		return nil, err
	}
	sc := shadow.SenderConfig{
		URL:         cfg.Shadow,
		Workers:     cfg.Workers,
		Timeout:     cfg.Timeout,
		QueueBytes:  cfg.QueueBytes,
		MaxInFlight: cfg.MaxInFlight,
		Rewriter:    rw,
		Stats:       &m.shadow,
	}
	if cfg.Insecure {
		sc.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	if m.sender, err = shadow.NewSender(sc); err != nil {
		return nil, fmt.Errorf("shadow %s: %w", cfg.Shadow, err)
	}
	return m, nil
}

// framingConfig returns the framing configuration whose callbacks feed this
// mirror.
func (m *mirror) framingConfig(cfg MirrorConfig) *httpframe.Config {
	fc := cfg.framingConfig(&m.framing)
	fc.Keep = m.sampler.Keep
	fc.Emit = func(r *httpframe.Request) { m.sender.Send(r) }
	return fc
}

func (m *mirror) start() { m.sender.Start() }

// close stops accepting requests and waits for those in flight until ctx
// ends; what is still in flight then is counted as failed (shutdown).
func (m *mirror) close(ctx context.Context) error { return m.sender.Close(ctx) }
