// Command shadowtee-bench measures shadowtee, and any other tee given as a
// command, under open-loop HTTP load in a client / gateway / shadow topology
// of network namespaces (internal/sandbox). It needs root.
//
// For each scenario it runs the load without a tee (the baseline), then
// with shadowtee attached to the gateway, then with each --variant of
// shadowtee and each --peer command, and reports the primary's latency and
// throughput, the share of requests mirrored exactly once, the tee's CPU
// per request, its wake-ups (context switches), its memory, the mirror
// lag, the connections opened to the shadow (and the most open at once),
// drops by reason and the start-up time, then one summary table of every
// run.
//
//	go run ./bench                      # get, post, newconn, saturation: about 4 minutes
//	go run ./bench --quick --scenarios get --rates 1000
//	go run ./bench --scenarios slow     # the shadow answers in 20-200 ms (--slow-delay)
//	go run ./bench --scenarios quiet,idle-conns  # no traffic; 10,000 idle connections
//	go run ./bench --scenarios soak --soak-faults slow  # a shadow answering in 5 s
//	go run ./bench --scenarios h2       # h2load against an h2c primary
//	go run ./bench --scenarios compare --variant '--compare'
//	go run ./bench --scenarios saturation --pin
//	go run ./bench --peer 'gor --input-raw {iface}:{port} --output-http http://{shadow}'
//
// --shadow-delay D or MIN-MAX makes the shadow wait before each answer in
// every scenario; --agent-args adds flags to every shadowtee run, and each
// --variant 'ARGS' adds a shadowtee run with those flags for a row of its
// own, next to the run without them.
//
// The files:
//
//	main.go      the command line (Config) and the top of a run
//	scenario.go  scenarios: what each load is, running every tool through it, the saturation ramp
//	run.go       one tool under one load: attach, measure CPU, wake-ups and memory, collect
//	tee.go       the tees as processes: shadowtee, peers, their RSS, the BPF program's run time
//	env.go       the topology, its services, the shadow's control port, start-up probes
//	roles.go     the roles the binary re-executes itself as: primary, shadow (net/http, h2c)
//	sink.go      the cheaper shadow server for pinned saturation runs
//	loadgen.go   the open-loop HTTP/1.1 load generator and its answer reader
//	h2.go        the HTTP/2 load: h2load against the h2c primary
//	idle.go      the idle-conns load (many silent keep-alive connections) and the quiet run
//	soak.go      shadow faults over long runs: RSS series and the ledger of every request
//	memory.go    where a tee's memory is (smaps and the agent's gauges)
//	proc.go      /proc readers: CPU, memory, context switches, the machine
//	stats.go     quantiles, Prometheus text, drop counters
//	targets.go   the goals shadowtee is held to
//	report.go    the markdown and JSON reports
//	pin.go       CPU pinning for --pin
package main
