package capture

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// neededCaps are the capabilities the kernel side needs: load the program
// and its maps, attach it, and pass the verifier's checks for programs of
// privileged users.
var neededCaps = []struct {
	bit  uint
	name string
}{
	{39, "CAP_BPF"},
	{12, "CAP_NET_ADMIN"},
	{38, "CAP_PERFMON"},
}

// explainPermission turns a permission error of the kernel into what to do
// about it: which capabilities this process lacks.
func explainPermission(err error) error {
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		return err
	}
	missing, ok := missingCaps()
	switch {
	case !ok:
		return fmt.Errorf("%w: run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", err)
	case len(missing) > 0:
		return fmt.Errorf("%w: this process lacks %s (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; run as root or grant them)",
			err, strings.Join(missing, ", "))
	default:
		return fmt.Errorf("%w: the process holds CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; on kernels before 5.11 it also needs CAP_SYS_RESOURCE, and a seccomp profile may forbid bpf()", err)
	}
}

// missingCaps lists the needed capabilities missing from the effective set.
func missingCaps() ([]string, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, false
		}
		var missing []string
		for _, c := range neededCaps {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c.name)
			}
		}
		return missing, true
	}
	return nil, false
}
