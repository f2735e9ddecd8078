package bpf

import (
	"net/netip"
	"testing"

	"github.com/shadowtee/shadowtee/config"
)

// The limits are the embedded program's map sizes, and the configuration
// package, which cannot import this one, keeps the same port limit.
func TestLimitsComeFromTheProgram(t *testing.T) {
	spec, err := loadTee()
	if err != nil {
		t.Fatal(err)
	}
	var maps teeMapSpecs
	if err := spec.Assign(&maps); err != nil {
		t.Fatal(err)
	}
	if MaxPorts != int(maps.Ports.MaxEntries) || MaxDestinations != int(maps.Destinations.MaxEntries) {
		t.Errorf("MaxPorts %d, MaxDestinations %d; the program's maps hold %d and %d",
			MaxPorts, MaxDestinations, maps.Ports.MaxEntries, maps.Destinations.MaxEntries)
	}
	if MaxPorts == 0 || MaxDestinations == 0 {
		t.Errorf("MaxPorts %d, MaxDestinations %d", MaxPorts, MaxDestinations)
	}
	if config.MaxPorts != MaxPorts {
		t.Errorf("config.MaxPorts = %d, the kernel's ports map holds %d", config.MaxPorts, MaxPorts)
	}
}

// The loaded maps have the sizes the limits promise.
func TestLoadedMapsMatchLimits(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16})
	if got := int(tee.objs.Ports.MaxEntries()); got != MaxPorts {
		t.Errorf("ports map holds %d, MaxPorts %d", got, MaxPorts)
	}
	if got := int(tee.objs.Destinations.MaxEntries()); got != MaxDestinations {
		t.Errorf("destinations map holds %d, MaxDestinations %d", got, MaxDestinations)
	}
	many := make([]netip.Prefix, MaxDestinations+1)
	for i := range many {
		many[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
	}
	if err := tee.SetDestinations(many); err == nil {
		t.Error("SetDestinations accepted more prefixes than the trie holds")
	}
}
