package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// doc joins lines into a file, so that the line numbers in a case can be
// counted by eye.
func doc(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// ruleWith is a valid rule "a" (lines 1 to 4) followed by extra lines
// (from line 5), indented as keys of the rule.
func ruleWith(extra ...string) string {
	lines := []string{
		"rules:",
		"  - name: a",
		"    match: {ports: [8080]}",
		"    shadow: {url: http://shadow.example:8000}",
	}
	for _, l := range extra {
		lines = append(lines, "    "+l)
	}
	return doc(lines...)
}

// matchWith is rule "a" with match given as a block (line 3) whose keys
// start on line 4.
func matchWith(keys ...string) string {
	lines := []string{"rules:", "  - name: a", "    match:"}
	for _, k := range keys {
		lines = append(lines, "      "+k)
	}
	lines = append(lines, "    shadow: {url: http://shadow.example:8000}")
	return doc(lines...)
}

// shadowWith is rule "a" with shadow given as a block (line 4) whose keys
// start on line 5.
func shadowWith(keys ...string) string {
	lines := []string{"rules:", "  - name: a", "    match: {ports: [8080]}", "    shadow:"}
	for _, k := range keys {
		lines = append(lines, "      "+k)
	}
	return doc(lines...)
}

func TestParseErrors(t *testing.T) {
	const f = "rules.yaml"
	tests := []struct {
		name, in, want string
	}{
		// The file as a whole.
		{"empty", "", `rules.yaml:1: the file is empty (add rules: with at least one rule, - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"comments only", "# nothing yet\n", `rules.yaml:1: the file is empty (add rules: with at least one rule, - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"zero rules", "rules: []\n", `rules.yaml:1: no rules (add at least one rule under rules:, - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"rules null", "rules:\n", `rules.yaml:1: no rules (add at least one rule under rules:, - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"rules not a list", "rules: web\n", `rules.yaml:1: rules must be a list, not "web" (write rules: followed by a list of rules, - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"top not a mapping", "- name: a\n", "rules.yaml:1: the top level must be a mapping of keys to values, not a list (write rules:\n  - {name: web, match: {ports: [8080]}, shadow: {url: \"http://web.shadow:8080\"}})"},
		{"unknown top key", "rule:\n  - name: a\n", `rules.yaml:1: unknown key "rule" in the top level (write rules; the top level takes rules)`},
		{"second document", ruleWith() + "---\nrules: []\n", `rules.yaml:5: a second YAML document starts here (keep one document: list every rule under a single rules:)`},
		{"syntax unclosed flow", doc("rules:", "  - name: a", "    match: {ports: [80]"), `rules.yaml:2: YAML syntax error: did not find expected ',' or '}' (check the indentation and quoting on this line and the one above; quote values that contain ": " or start with * & ! [ {)`},
		{"syntax indentation", doc("rules:", "  - name: a", "    match:", "      ports: [80]", "     hosts: [x]"), `rules.yaml:5: YAML syntax error: did not find expected key: this line does not fit the block that starts on line 1 (indent it like the keys of that block, or quote it)`},
		{"syntax colon in value", doc("rules:", "  - name: a", "    shadow: {url: http://x}", "    host: a: b"), `rules.yaml:4: YAML syntax error: mapping values are not allowed in this context (check the indentation and quoting on this line and the one above; quote values that contain ": " or start with * & ! [ {)`},
		{"syntax tab", "rules:\n\t- name: a\n", `rules.yaml:2: YAML syntax error: found character that cannot start any token (indent with spaces: YAML does not allow tabs)`},
		{"merge key", ruleWith("<<: {x: 1}"), `rules.yaml:5: rule "a": merge keys (<<) are not supported (write the keys out)`},

		// Rule keys and names.
		{"unknown rule key", ruleWith("percent: 10"), `rules.yaml:5: rule "a": unknown key "percent" in a rule (a rule takes name, match, shadow, percentage, sampleKey, hostSuffix, host, headers, compare)`},
		{"typo in rule key", ruleWith("hostsuffix: false"), `rules.yaml:5: rule "a": unknown key "hostsuffix" in a rule (write hostSuffix; a rule takes name, match, shadow, percentage, sampleKey, hostSuffix, host, headers, compare)`},
		{"key twice", ruleWith("percentage: 5", "percentage: 6"), `rules.yaml:6: rule "a": percentage is given twice (first on line 5) (remove one of them)`},
		{"rule not a mapping", doc("rules:", "  - web"), `rules.yaml:2: rule 1: a rule must be a mapping of keys to values, not "web" (write - {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}})`},
		{"no name", doc("rules:", "  - match: {ports: [8080]}", "    shadow: {url: http://s}"), `rules.yaml:2: rule 1: the rule has no name (write name: followed by a short unique name, e.g. name: httpbin)`},
		{"empty name", doc("rules:", `  - name: ""`, "    match: {ports: [8080]}", "    shadow: {url: http://s}"), `rules.yaml:2: rule 1: name "" is empty (write a short name such as httpbin or api-v2)`},
		{"null name", doc("rules:", "  - name:", "    match: {ports: [8080]}", "    shadow: {url: http://s}"), `rules.yaml:2: rule 1: name has no value (write a short unique name, e.g. name: httpbin)`},
		{"name with space", doc("rules:", "  - name: my rule", "    match: {ports: [8080]}", "    shadow: {url: http://s}"), `rules.yaml:2: rule 1: name "my rule" may hold only letters, digits, '-', '_' and '.' (write a short name such as httpbin or api-v2)`},
		{"duplicate names", ruleWith() + doc("  - name: a", "    match: {ports: [8081]}", "    shadow: {url: http://s}"), `rules.yaml:5: rule "a": the name is already used by the rule on line 2 (give each rule its own name)`},

		// match.
		{"no match", doc("rules:", "  - name: a", "    shadow: {url: http://s}"), `rules.yaml:2: rule "a": the rule has no match: the kernel copies only the TCP ports that rules list, so every rule needs match.ports (write match: {ports: [8080]})`},
		{"empty match", doc("rules:", "  - name: a", "    match: {}", "    shadow: {url: http://s}"), `rules.yaml:3: rule "a": match.ports is empty: the kernel copies only the TCP ports that rules list, so every rule needs at least one (write match: {ports: [8080]})`},
		{"match without ports", matchWith("hosts: [a.example]"), `rules.yaml:3: rule "a": match.ports is empty: the kernel copies only the TCP ports that rules list, so every rule needs at least one (write match: {ports: [8080]})`},
		{"ports empty", matchWith("ports: []"), `rules.yaml:4: rule "a": match.ports is empty: the kernel copies only the TCP ports that rules list, so every rule needs at least one (write match: {ports: [8080]})`},
		{"ports scalar", matchWith("ports: 8080"), `rules.yaml:4: rule "a": ports must be a list, not "8080" (write ports: [8080] or ports: [8080, 8443])`},
		{"port zero", matchWith("ports: [0]"), `rules.yaml:4: rule "a": port 0 is outside 1..65535 (write a TCP port such as 8080)`},
		{"port too large", matchWith("ports: [80, 70000]"), `rules.yaml:4: rule "a": port 70000 is outside 1..65535 (write a TCP port such as 8080)`},
		{"port name", matchWith("ports: [http]"), `rules.yaml:4: rule "a": port "http" is not a whole number (write a TCP port such as 8080)`},
		{"typo in match", matchWith("ports: [80]", "pathprefix: /api"), `rules.yaml:5: rule "a": unknown key "pathprefix" in match (write pathPrefix; match takes ports, hosts, pathPrefix, methods, destinations)`},
		{"typo in match 2", matchWith("ports: [80]", "host: [a.example]"), `rules.yaml:5: rule "a": unknown key "host" in match (write hosts; match takes ports, hosts, pathPrefix, methods, destinations)`},
		{"host invalid", matchWith("ports: [80]", "hosts: [exa_mple.com]"), `rules.yaml:5: rule "a": host "exa_mple.com" is not a valid host name: '_' is not allowed (write a name such as shadowing.example, or *.example.com for every name below example.com)`},
		{"host with port", matchWith("ports: [80]", "hosts: [shadowing.example:8080]"), `rules.yaml:5: rule "a": host "shadowing.example:8080" has a port, and hosts are matched without one (write shadowing.example and put the port in ports)`},
		{"host wildcard inside", matchWith("ports: [80]", `hosts: ["api.*.example"]`), `rules.yaml:5: rule "a": host "api.*.example" has a wildcard that is not a whole first label (write *.example.com for every name below example.com)`},
		{"host wildcard partial", matchWith("ports: [80]", `hosts: ["*api.example"]`), `rules.yaml:5: rule "a": host "*api.example" has a wildcard that is not a whole first label (write *.example.com for every name below example.com)`},
		{"host IPv6 bare", matchWith("ports: [80]", `hosts: ["fd00::1"]`), `rules.yaml:5: rule "a": host "fd00::1" is an IPv6 address without brackets (write [fd00::1], as in a Host header)`},
		{"host IPv6 bad", matchWith("ports: [80]", `hosts: ["[fd00::g]"]`), `rules.yaml:5: rule "a": host "[fd00::g]" is not a valid IPv6 address in brackets (write an address such as [fd00::1])`},
		{"host label hyphen", matchWith("ports: [80]", "hosts: [-a.example]"), `rules.yaml:5: rule "a": host "-a.example" is not a valid host name: label "-a" starts or ends with '-' (write a name such as shadowing.example, or *.example.com for every name below example.com)`},
		{"host empty label", matchWith("ports: [80]", "hosts: [a..example]"), `rules.yaml:5: rule "a": host "a..example" is not a valid host name: it has an empty label (write a name such as shadowing.example, or *.example.com for every name below example.com)`},
		{"host list item", matchWith("ports: [80]", "hosts: [[a]]"), `rules.yaml:5: rule "a": a host must be a name, not a list (write a name such as shadowing.example, or *.example.com for every name below example.com)`},
		{"pathPrefix relative", matchWith("ports: [80]", "pathPrefix: api"), `rules.yaml:5: rule "a": pathPrefix "api" does not start with "/" (write /api)`},
		{"pathPrefix query", matchWith("ports: [80]", `pathPrefix: "/api?x=1"`), `rules.yaml:5: rule "a": pathPrefix "/api?x=1" contains '?'; only the path is matched (write /api)`},
		{"pathPrefix space", matchWith("ports: [80]", `pathPrefix: "/a b"`), `rules.yaml:5: rule "a": pathPrefix "/a b" contains a space, a control or a non-ASCII character (write the path as it appears on the wire, percent-encoded)`},
		{"method not a token", matchWith("ports: [80]", `methods: ["GET /"]`), `rules.yaml:5: rule "a": method "GET /" is not an HTTP method name (write a method such as GET or POST)`},
		{"destination not CIDR", matchWith("ports: [80]", "destinations: [pods]"), `rules.yaml:5: rule "a": destination "pods" is not a CIDR prefix (write a network such as "10.244.1.0/24" or "fd00::/64")`},
		{"destination address", matchWith("ports: [80]", "destinations: [10.244.1.7]"), `rules.yaml:5: rule "a": destination "10.244.1.7" is an address, not a CIDR prefix (write 10.244.1.7/32 for that address alone)`},
		{"destination v6 address", matchWith("ports: [80]", `destinations: ["fd00::7"]`), `rules.yaml:5: rule "a": destination "fd00::7" is an address, not a CIDR prefix (write fd00::7/128 for that address alone)`},
		{"destination host bits", matchWith("ports: [80]", "destinations: [10.244.1.7/24]"), `rules.yaml:5: rule "a": destination "10.244.1.7/24" has bits set past the /24 (write 10.244.1.0/24)`},
		{"destination length", matchWith("ports: [80]", "destinations: [10.0.0.0/33]"), `rules.yaml:5: rule "a": destination "10.0.0.0/33" is not a CIDR prefix (write a network such as "10.244.1.0/24" or "fd00::/64")`},

		// shadow.
		{"no shadow", doc("rules:", "  - name: a", "    match: {ports: [80]}"), `rules.yaml:2: rule "a": the rule has no shadow (write shadow: {url: http://host:port})`},
		{"shadow is a string", doc("rules:", "  - name: a", "    match: {ports: [80]}", "    shadow: http://s"), `rules.yaml:4: rule "a": shadow must be a mapping of keys to values, not "http://s" (write shadow: {url: http://host:port})`},
		{"no url", shadowWith("timeout: 2s"), `rules.yaml:4: rule "a": shadow has no url (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url scheme", shadowWith("url: ftp://s.example"), `rules.yaml:5: rule "a": shadow URL "ftp://s.example": want http:// or https:// (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url without scheme", shadowWith("url: s.example:8000"), `rules.yaml:5: rule "a": shadow URL "s.example:8000": want http:// or https:// (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url path", shadowWith("url: http://s.example/v2"), `rules.yaml:5: rule "a": shadow URL "http://s.example/v2": a path is not supported: requests keep their own target (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url no host", shadowWith("url: http://:8000"), `rules.yaml:5: rule "a": shadow URL "http://:8000": missing host (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url query", shadowWith("url: http://s.example?x=1"), `rules.yaml:5: rule "a": shadow URL "http://s.example?x=1": a query or fragment is not supported (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"url port", shadowWith("url: http://s.example:99999"), `rules.yaml:5: rule "a": shadow URL "http://s.example:99999": invalid port (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`},
		{"typo in shadow", shadowWith("url: http://s", "maxConnection: 2"), `rules.yaml:6: rule "a": unknown key "maxConnection" in shadow (write maxConnections; shadow takes url, protocol, timeout, idleTimeout, maxConnections, maxPending, maxRequests, queue, pipeline, ordered, insecureSkipVerify)`},
		{"workers", shadowWith("url: http://s", "workers: 4"), `rules.yaml:6: rule "a": workers is not a field: connections to the shadow grow with the requests in flight, up to maxConnections (default 1024) (remove workers; write maxConnections: N to cap the connections)`},
		{"maxConnections zero", shadowWith("url: http://s", "maxConnections: 0"), `rules.yaml:6: rule "a": maxConnections 0 is outside 1..65536 (write a number of connections from 1 to 65536, e.g. maxConnections: 1024)`},
		{"maxPending text", shadowWith("url: http://s", "maxPending: four"), `rules.yaml:6: rule "a": maxPending "four" is not a whole number (write a number of requests waiting for a connection from 1 to 65536, e.g. maxPending: 1024)`},
		{"protocol", shadowWith("url: http://s", "protocol: h3"), `rules.yaml:6: rule "a": protocol "h3" is not http1 or http2 (write protocol: http1 for a shadow that speaks only HTTP/1.1, or protocol: http2)`},
		{"idle timeout unit", shadowWith("url: http://s", "idleTimeout: 30"), `rules.yaml:6: rule "a": idleTimeout 30 has no unit (write 30s for seconds)`},
		{"timeout zero", shadowWith("url: http://s", "timeout: 0s"), `rules.yaml:6: rule "a": timeout 0s must be positive (write a Go duration such as 15s, 500ms or 1m)`},
		{"timeout negative", shadowWith("url: http://s", "timeout: -1s"), `rules.yaml:6: rule "a": timeout -1s must be positive (write a Go duration such as 15s, 500ms or 1m)`},
		{"timeout no unit", shadowWith("url: http://s", "timeout: 15"), `rules.yaml:6: rule "a": timeout 15 has no unit (write 15s for seconds)`},
		{"timeout text", shadowWith("url: http://s", "timeout: soon"), `rules.yaml:6: rule "a": timeout "soon" is not a duration (write a Go duration such as 15s, 500ms or 1m)`},
		{"queue text", shadowWith("url: http://s", "queue: lots"), `rules.yaml:6: rule "a": queue "lots" is not a size (write a size such as 64MiB, 1GiB or a number of bytes)`},
		{"queue zero", shadowWith("url: http://s", "queue: 0"), `rules.yaml:6: rule "a": queue 0 must be positive (write a size such as 64MiB, 1GiB or a number of bytes)`},
		{"insecure on http", shadowWith("url: http://s", "insecureSkipVerify: true"), `rules.yaml:6: rule "a": insecureSkipVerify applies to https:// shadows only, and the url is http:// (remove insecureSkipVerify, or use an https:// url)`},
		{"insecure not bool", shadowWith("url: https://s", "insecureSkipVerify: yes"), `rules.yaml:6: rule "a": insecureSkipVerify must be true or false, not "yes" (write insecureSkipVerify: true or insecureSkipVerify: false)`},

		// Sampling.
		{"percentage too large", ruleWith("percentage: 150"), `rules.yaml:5: rule "a": percentage 150 is outside 0..100 (write a number such as 100 or 12.5)`},
		{"percentage negative", ruleWith("percentage: -0.5"), `rules.yaml:5: rule "a": percentage -0.5 is outside 0..100 (write a number such as 100 or 12.5)`},
		{"percentage text", ruleWith("percentage: all"), `rules.yaml:5: rule "a": percentage "all" is not a number (write a number such as 100 or 12.5)`},
		{"percentage quoted", ruleWith(`percentage: "50"`), `rules.yaml:5: rule "a": percentage "50" is not a number (write a number such as 100 or 12.5)`},
		{"percentage sign", ruleWith("percentage: 50%"), `rules.yaml:5: rule "a": percentage "50%" is not a number (write a number such as 100 or 12.5)`},
		{"percentage exponent", ruleWith("percentage: 1e1"), `rules.yaml:5: rule "a": percentage 1e1 is not a plain decimal number (write a number such as 100 or 12.5)`},
		{"percentage infinite", ruleWith("percentage: .inf"), `rules.yaml:5: rule "a": percentage .inf is not a plain decimal number (write a number such as 100 or 12.5)`},
		{"percentage empty", ruleWith("percentage:"), `rules.yaml:5: rule "a": percentage has no value (write a number such as 100 or 12.5)`},
		{"sampleKey", ruleWith("sampleKey: x-request-id"), `rules.yaml:5: rule "a": sampleKey: shadow sampling key "x-request-id": want "" or "header:NAME" (write header:NAME, e.g. header:x-request-id)`},
		{"sampleKey bad header", ruleWith(`sampleKey: "header:x y"`), `rules.yaml:5: rule "a": sampleKey: shadow sampling key "header:x y": "x y" is not a valid header name (write header:NAME, e.g. header:x-request-id)`},

		// Host.
		{"host and suffix", ruleWith("host: shadow.example", "hostSuffix: true"), `rules.yaml:6: rule "a": host and hostSuffix: true are both set (remove hostSuffix: a literal host replaces the suffix)`},
		{"host literal", ruleWith("host: http://shadow.example"), `rules.yaml:5: rule "a": host "http://shadow.example": contains '/' (write a host name, with a port if needed, e.g. host: shadow.example:8080)`},
		{"host empty", ruleWith(`host: ""`), `rules.yaml:5: rule "a": host is empty (write the Host to send, e.g. host: shadow.example:8080, or remove host to keep the -shadow suffix)`},
		{"hostSuffix not bool", ruleWith(`hostSuffix: "false"`), `rules.yaml:5: rule "a": hostSuffix must be true or false, not "false" (write hostSuffix: true or hostSuffix: false)`},

		// headers.
		{"typo in headers", ruleWith("headers: {sett: {a: b}}"), `rules.yaml:5: rule "a": unknown key "sett" in headers (write set; headers takes set, remove, xForwardedFor)`},
		{"set not a mapping", ruleWith("headers: {set: [a]}"), `rules.yaml:5: rule "a": set must be a mapping of header names to values, not a list (write set: {x-shadow: "1"})`},
		{"set bad name", ruleWith(`headers: {set: {"x shadow": "1"}}`), `rules.yaml:5: rule "a": set: "x shadow" is not a header name (write a header name such as x-shadow)`},
		{"set host", ruleWith(`headers: {set: {Host: "x"}}`), `rules.yaml:5: rule "a": set header "Host": this field cannot be set (set another header; Host, Content-Length, Transfer-Encoding and connection fields are the agent's)`},
		{"set connection", ruleWith(`headers: {set: {connection: "close"}}`), `rules.yaml:5: rule "a": set header "connection": this field cannot be set (set another header; Host, Content-Length, Transfer-Encoding and connection fields are the agent's)`},
		{"set no value", ruleWith(`headers: {set: {x-a: }}`), `rules.yaml:5: rule "a": set: header x-a has nothing as its value (write a value, "" for an empty one)`},
		{"set control", ruleWith(`headers: {set: {x-a: "a\nb"}}`), `rules.yaml:5: rule "a": set header "x-a": value contains a control character (CR, LF, NUL or similar) (set another header; Host, Content-Length, Transfer-Encoding and connection fields are the agent's)`},
		{"set twice", ruleWith(`headers: {set: {x-a: "1", X-A: "2"}}`), `rules.yaml:5: rule "a": headers: set header "X-A": given twice (set or remove each header once)`},
		{"set and remove", ruleWith(`headers: {set: {x-a: "1"}, remove: [X-A]}`), `rules.yaml:5: rule "a": headers: set header "x-a": also listed in remove headers (set or remove each header once)`},
		{"remove bad name", ruleWith(`headers: {remove: ["a:b"]}`), `rules.yaml:5: rule "a": remove: "a:b" is not a header name (write a header name such as authorization)`},
		{"remove framing", ruleWith(`headers: {remove: [Content-Length]}`), `rules.yaml:5: rule "a": remove header "Content-Length": this field cannot be removed (remove another header; Host, Content-Length and Transfer-Encoding frame the request)`},
		{"remove not a list", ruleWith(`headers: {remove: cookie}`), `rules.yaml:5: rule "a": remove must be a list, not "cookie" (write remove: [authorization, cookie])`},
		{"xff not bool", ruleWith(`headers: {xForwardedFor: 1}`), `rules.yaml:5: rule "a": xForwardedFor must be true or false, not "1" (write xForwardedFor: true or xForwardedFor: false)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), f)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.in)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse of\n%s\ngot  %s\nwant %s", tt.in, got, tt.want)
			}
			var one *Error
			if !errors.As(err, &one) || one.File != f {
				t.Errorf("error %v: no *Error for file %s", err, f)
			}
		})
	}
}

func TestTooManyPorts(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 5 {
		var ports []string
		for j := range 13 {
			ports = append(ports, fmt.Sprint(8000+i*13+j))
		}
		fmt.Fprintf(&b, "  - name: r%d\n    match: {ports: [%s, 8000]}\n    shadow: {url: http://s}\n", i, strings.Join(ports, ", "))
	}
	// 65 distinct ports: the 65th is the last one of rule r4, whose match
	// is on line 15.
	_, err := Parse([]byte(b.String()), "many.yaml")
	want := `many.yaml:15: rule "r4": port 8064 is the 65th distinct port of the file, and the kernel filter holds at most 64 (use fewer distinct ports across all rules)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	// 64 are fine, however many rules repeat them.
	in := strings.Replace(b.String(), "8064, ", "", 1)
	if _, err := Parse([]byte(in), "many.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestAllProblemsReported(t *testing.T) {
	in := doc(
		"rules:",
		"  - name: a",
		"    match: {ports: [0], pathprefix: /}",
		"    shadow: {url: ftp://s}",
		"    percentage: 101",
		"  - name: a",
		"    match: {ports: [80]}",
		"    shadow: {url: http://s}",
	)
	_, err := Parse([]byte(in), "r.yaml")
	want := strings.Join([]string{
		`r.yaml:3: rule "a": port 0 is outside 1..65535 (write a TCP port such as 8080)`,
		`r.yaml:3: rule "a": unknown key "pathprefix" in match (write pathPrefix; match takes ports, hosts, pathPrefix, methods, destinations)`,
		`r.yaml:4: rule "a": shadow URL "ftp://s": want http:// or https:// (write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000)`,
		`r.yaml:5: rule "a": percentage 101 is outside 0..100 (write a number such as 100 or 12.5)`,
		`r.yaml:6: rule "a": the name is already used by the rule on line 2 (give each rule its own name)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 5 || es[3].Line != 5 || es[3].Rule != `rule "a"` {
		t.Fatalf("Errors = %#v", es)
	}
}

func TestClosest(t *testing.T) {
	keys := secMatch.keys
	for in, want := range map[string]string{
		"pathprefix":  "pathPrefix",
		"PathPrefix":  "pathPrefix",
		"path_prefix": "pathPrefix",
		"port":        "ports",
		"host":        "hosts",
		"method":      "methods",
		"destination": "destinations",
		"dest":        "",
		"x":           "",
		"url":         "",
	} {
		if got := closest(in, keys); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
