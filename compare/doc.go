// Package compare compares the primary's answers with the shadow's, per
// endpoint, and says which fields of the shadow's answers differ beyond the
// noise that the primary makes by itself.
//
// For every mirrored request the agent hands the engine an Exchange: the
// request, the primary's answer as captured on the wire, the shadow's as the
// sender read it, and optionally a second answer from a copy of the current
// release. The engine compares them and keeps, per rule and endpoint,
// counters per field path, a few samples, an example pair, status codes and
// latency quantiles. Report returns a snapshot: the /api/compare document,
// which Handler serves with the page /compare, and which WriteJSON and
// WriteHTML write to files.
//
// # What is compared
//
//   - status: the status codes.
//   - header.<name>: the answer header fields (trailer.<name>: the
//     trailer fields) by lower-case name, the values of one name joined in
//     order. Fields in DefaultNoiseHeaders and Config.NoiseHeaders are not
//     compared (Config.CompareHeaders takes names back); Set-Cookie is
//     compared by cookie names only; Content-Length only when neither
//     answer has a body, since the bodies are compared.
//   - the body, after removing its content codings (gzip, x-gzip, deflate
//     as zlib or raw, br, zstd, stacked in any order), decoding at most
//     Config.BodyCap bytes: past that (a decompression bomb, or a large
//     body) only the prefix is compared and the pair is marked truncated.
//     JSON (application/json, */*+json, or no Content-Type and a body that
//     starts like JSON) is compared structurally: body.<key>.<key>, array
//     elements as [] (body.items[].price), keys that are not plain names
//     quoted (body["a.b"]), keys that look like ids folded (body.users.{id});
//     members by key whatever their order, numbers by exact decimal value
//     (1 == 1.0 == 10e-1; integers beyond 2^53 stay distinct), strings after
//     unescaping; each difference is "missing" (the primary's answer only),
//     "extra" (the shadow's only), "type" or "value". Form bodies
//     (application/x-www-form-urlencoded) compare by key: body.<key>. Text
//     (text/*, XML, JavaScript, YAML, CSV, ND-JSON) compares by lines: the
//     block between the common first and last lines is the difference
//     ("lines", with its first line number). Anything else compares by
//     length and hash ("bytes"). A body that claims JSON but is not is
//     compared as text. When either body was cut (Answer.Truncated, or the
//     decoding bound), only what both hold is compared and the pair, its
//     samples and its example say "truncated".
//
// Every field path has one counter per endpoint across instances; a few
// samples keep the instance path (body.items[3].price) and both values.
//
// # Verdict
//
// Noise is learned, not configured, from two sources: the primary's last
// answer to an equal request (same rule, method, authority, target and
// request body hash) seen within Config.NoiseWindow (a bounded LRU in
// entries and bytes), and the Secondary answer when the agent has one
// (Diffy's way: noise without waiting for repeats). Each such pair is a
// noise pair of the endpoint; the fields in which it differs count as noise.
// For a field f of an endpoint:
//
//	diff_rate  = pairs (primary, shadow) in which f differs / pairs compared
//	noise_rate = noise pairs in which f differs / noise pairs  (0 without any)
//
// f is reported different when all of these hold (Diffy's rule, on rates
// rather than counts, since noise pairs and compared pairs are not the
// same population):
//
//	diff_rate > noise_rate
//	(diff_rate - noise_rate) / (diff_rate + noise_rate) > RelativeThreshold (default 0.20)
//	 diff_rate - noise_rate                             > AbsoluteThreshold (default 0.0003)
//
// and the endpoint has at least Config.MinSamples compared pairs (default
// 10); before that, fields that differed are listed as pending. A field
// that fails the rule is listed as noise, with its rates.
//
// Each exchange gets one verdict, for the metric
// shadowtee_compare_total{rule,endpoint,verdict} (VisitVerdicts): unpaired
// when either answer is missing; same when nothing compared differs;
// different when a field that differs passes the rule (without the
// minimum-samples gate) at that moment; else noise_only. Verdicts are made
// when the exchange arrives, against what is known then, and not revisited:
// the first pairs of an endpoint, before any noise is learned, are
// different if anything differs.
//
// # Endpoints
//
// An endpoint is a method and a path template. The query is not part of
// it. Segments that look like ids (digits, UUIDs, 8+ hex digits with a
// decimal digit, 16+ base64/base64url characters mixing letters and
// digits) become {id}; a position that takes more than Config.Cardinality
// distinct values folds into {id} too, except the values that carried at
// least a tenth of its traffic, and the endpoints made before the fold are
// merged into the folded one. Config.Patterns ("/users/{id}/orders",
// "/files/*") come first and are kept as written. Each rule has at most
// Config.MaxEndpoints endpoints, each with at most Config.MaxFields field
// paths; beyond, the rest go to the endpoint "* {other}" and the path
// "{other}", so memory and metric labels stay bounded.
//
// # Report schema (/api/compare)
//
//	{
//	  "generated_at": RFC 3339 time,
//	  "settings": {"min_samples", "relative_threshold", "absolute_threshold", "noise_window_seconds"},
//	  "totals": {"exchanges", "compared", "same", "different", "noise_only", "unpaired",
//	             "truncated", "noise_pairs", "secondary", "decode_limited", "dropped", "endpoints"},
//	  "endpoints": [{                       // sorted by diff_share, then different
//	    "rule", "method", "path",           // path: the template
//	    "exchanges", "compared", "same", "different", "noise_only", "unpaired",
//	    "truncated", "noise_pairs",
//	    "diff_share": different / compared,
//	    "judged": compared >= min_samples,
//	    "fields":  [field...],              // judged different
//	    "noise":   [field...],              // judged noise (or seen in noise pairs only)
//	    "pending": [field...],              // differed, endpoint not judged yet
//	    "status": {"primary": {"200": n, ...}, "shadow": {...}},
//	    "latency_ms": {"primary": {"p50", "p99", "count"}, "shadow": {...}},
//	    "example": {                        // one pair judged different, whole
//	      "time", "proto", "method", "authority", "target",
//	      "request_headers": [{"name", "value"}], "request_body", "request_body_len", "request_note",
//	      "curl",                           // replays the request against the shadow
//	      "primary": answer, "shadow": answer,
//	      "differences": [{"path", "kind", "primary", "shadow", "line", "verdict"}],
//	      "truncated"
//	    }
//	  }]
//	}
//	field  = {"path", "kind", "kinds": {kind: n}, "count", "noise_count", "diff_rate", "noise_rate",
//	          "sample": sample, "more_samples": [sample...]}
//	sample = {"path" (instance), "kind", "primary", "shadow" (null: absent), "line",
//	          "method", "target", "time", "truncated"}
//	answer = {"status", "status_diff", "status_noise", "headers": [{"name", "value", "diff", "noise"}],
//	          "body": [{"text", "diff", "noise"}], "body_len", "encoding", "media", "truncated", "note"}
//
// kind is one of value, missing, extra, type, lines, bytes. Values are
// strings as they appear on the wire: JSON values as JSON text, header
// values as sent, at most 240 bytes.
//
// # Invariants
//
//   - Secrets never leave memory: the values of Authorization,
//     Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key, X-Auth-Token and
//     Config.RedactHeaders, and of the body fields under Config.RedactPaths
//     (JSON and form bodies, of requests and answers), are replaced by
//     "[redacted]" when a difference is recorded, so no sample, example,
//     log line, report or page can hold them; the curl line leaves redacted
//     headers out.
//   - Submit never blocks: a bounded queue feeds the engine's goroutine, and
//     a full queue drops the exchange and counts it.
//   - Comparing an identical pair allocates nothing once the engine is warm;
//     bodies with the same coding and the same coded bytes are not even
//     decoded. JSON is walked in lock step without building trees: where
//     both documents hold the same bytes only one side is scanned, by
//     brackets and quotes.
//   - Memory is bounded: rules, endpoints, fields, samples
//     (Config.MaxSampleBytes), the noise LRU, decoded bodies
//     (Config.BodyCap), the path tree.
//   - The page escapes everything: data reaches the DOM as text only, the
//     static report holds its data in a JSON element whose < > & are
//     escaped, and a Content-Security-Policy allows only the page's own
//     script and style.
//
// # Imports
//
// It imports httpmsg and httpsyntax of the project, and never agent,
// shadow, capture, bpf or httpframe: it sees answers, not how they were
// captured or sent.
package compare
