package agent

import (
	"crypto/tls"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/shadow"
)

// The rules file says what a rule wants; the shadow package says how. These
// functions are the one place where the first becomes the second.

// rewriteConfig returns how the rule changes requests.
func rewriteConfig(r *config.Rule) shadow.RewriteConfig {
	rc := shadow.RewriteConfig{
		NoHostSuffix:  !r.HostSuffix,
		Host:          r.Host,
		RemoveHeaders: append([]string(nil), r.Headers.Remove...),
		NoXFF:         !r.Headers.XForwardedFor,
	}
	for _, h := range r.Headers.Set {
		rc.SetHeaders = append(rc.SetHeaders, shadow.HeaderValue{Name: h.Name, Value: h.Value})
	}
	return rc
}

// senderConfig returns the sender settings of the rule; zero values take
// the sender's defaults. The caller adds the Rewriter and Stats.
func senderConfig(r *config.Rule) shadow.SenderConfig {
	s := &r.Shadow
	sc := shadow.SenderConfig{
		URL:            s.URL,
		Timeout:        s.Timeout,
		IdleTimeout:    s.IdleTimeout,
		MaxConnections: s.MaxConnections,
		MaxPending:     s.MaxPending,
		MaxRequests:    s.MaxRequests,
		QueueBytes:     s.Queue,
		Pipeline:       s.Pipeline,
		Ordered:        s.Ordered,
	}
	if s.InsecureSkipVerify {
		// The user asked for it, for a shadow with a self-signed
		// certificate.
		sc.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec
	}
	return sc
}
