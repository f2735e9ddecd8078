// Package config reads the rules file of shadowtee (`--config FILE`): which
// captured requests are mirrored, to which shadow, and how they are changed
// on the way. It also compiles the rules into a Router that picks the rule of
// each framed request, and watches the file so that the agent can reload it.
//
// A rules file is YAML:
//
//	rules:
//	  - name: httpbin
//	    match:
//	      ports: [8080]                  # required: the kernel copies only these ports
//	      hosts: ["shadowing.example", "*.example.com"]
//	      pathPrefix: /
//	      methods: [GET, POST]
//	      destinations: ["10.244.1.0/24"]
//	    shadow:
//	      url: http://httpbin.shadow.svc.cluster.local:8000
//	      protocol: http1                # optional: the shadow speaks only HTTP/1.1
//	      timeout: 15s
//	      idleTimeout: 30s
//	      maxConnections: 1024           # Envoy's circuit breakers
//	      maxPending: 1024
//	      maxRequests: 1024
//	      queue: 64MiB
//	      pipeline: 1
//	      ordered: false
//	      insecureSkipVerify: false
//	    percentage: 100
//	    sampleKey: "header:x-request-id"
//	    hostSuffix: true                 # or host: "literal", which turns it off
//	    headers:
//	      set: {x-shadow: "1"}
//	      remove: [authorization]
//	      xForwardedFor: true
//	    compare:                         # or compare: true
//	      endpoints: ["/users/{id}/orders"]
//	      ignoreHeaders: [x-trace-id]
//	      redactHeaders: [x-api-key]
//
// Parsing is strict: an unknown key, a value of the wrong type or out of
// range, or a rule that cannot work is an error that names the file, the
// line and what to write instead. The syntax it checks (URL, Host literal,
// header names and values) is httpsyntax's, which the sender uses too; a test
// of the agent builds every accepted rule, so that a file accepted here is
// accepted by the agent.
//
// config is a leaf: it must not import the framers, the sender or the agent.
package config
