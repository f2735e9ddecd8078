package sandbox

import "errors"

// Addresses of the gateway topology. They are in 198.18.0.0/15 and
// fd00::/8, which are reserved for tests and private use, and the namespaces
// have no route out.
const (
	ClientIPv4  = "198.18.0.1"
	GatewayIPv4 = "198.18.0.2" // the primary service listens here
	ClientIPv6  = "fd00::1"
	GatewayIPv6 = "fd00::2"

	GatewayShadowSideIPv4 = "198.18.1.2"
	ShadowIPv4            = "198.18.1.3" // the shadow service listens here
	GatewayShadowSideIPv6 = "fd00:1::2"
	ShadowIPv6            = "fd00:1::3"

	// ClientIface faces the gateway in the client namespace; GatewayIface is
	// where client traffic enters the gateway, and where the tee attaches.
	ClientIface        = "c0"
	GatewayIface       = "g0"
	GatewayShadowIface = "g1"
	ShadowIface        = "s0"
)

// Topology is three hosts in a row: a client, a gateway that runs the
// primary service and the tee, and a shadow host.
//
//	client c0 ---- g0 gateway g1 ---- s0 shadow
type Topology struct {
	*Sandbox
	Client, Gateway, Shadow *Netns
}

// NewTopology builds the three namespaces and their links.
func NewTopology(prefix string) (*Topology, error) {
	sb, err := New(prefix)
	if err != nil {
		return nil, err
	}
	t := &Topology{Sandbox: sb}
	if err := t.build(); err != nil {
		return nil, errors.Join(err, sb.Close())
	}
	return t, nil
}

func (t *Topology) build() (err error) {
	if t.Client, err = t.Netns("client"); err != nil {
		return err
	}
	if t.Gateway, err = t.Netns("gateway"); err != nil {
		return err
	}
	if t.Shadow, err = t.Netns("shadow"); err != nil {
		return err
	}
	if err := t.Veth(t.Client, ClientIface, []string{ClientIPv4 + "/24", ClientIPv6 + "/64"},
		t.Gateway, GatewayIface, []string{GatewayIPv4 + "/24", GatewayIPv6 + "/64"}); err != nil {
		return err
	}
	return t.Veth(t.Gateway, GatewayShadowIface, []string{GatewayShadowSideIPv4 + "/24", GatewayShadowSideIPv6 + "/64"},
		t.Shadow, ShadowIface, []string{ShadowIPv4 + "/24", ShadowIPv6 + "/64"})
}
