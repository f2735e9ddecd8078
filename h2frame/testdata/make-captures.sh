#!/usr/bin/env bash
# make-captures.sh rebuilds the HTTP/2 captures in this directory from real
# clients and servers on loopback. It needs root (tcpdump), Go, tcpdump,
# curl and nghttp2-client (nghttp, h2load), Debian's packages:
#
#     sudo h2frame/testdata/make-captures.sh
#
# The servers are the program in testdata/h2peer (its own module: it pulls gRPC,
# which the main module does not need): an x/net h2c server, and a gRPC
# server with a raw-bytes codec. Each capture is one bounded client run
# against one server on 127.0.0.1, recorded with tcpdump -U; the script
# starts and stops only the processes it started, by PID. Then it writes the
# client side of every connection as a seed of FuzzH2Framing.
#
#   curl.pcap            curl --http2-prior-knowledge: two GETs, a form POST
#   nghttp.pcap          nghttp (prior knowledge, RFC 7540 priorities): a
#                        GET, then a POST of a file
#   nghttp-upgrade.pcap  nghttp -u: GET with Upgrade: h2c, answered on
#                        stream 1 after 101 Switching Protocols
#   h2load.pcap          h2load -n 200 -c 4 -m 8: 200 GETs on 4 connections
#   go-client.pcap       x/net's Transport: GET with cookies, POST, a 40 KiB
#                        PUT, a POST with trailers
#   grpc.pcap            grpc-go: unary, client-, server- and bidi-streaming
#                        calls with metadata (binary too)
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()

cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "make-captures.sh: needs root (tcpdump)" >&2; exit 1; }
for tool in go tcpdump curl nghttp h2load timeout; do
	command -v "$tool" >/dev/null || { echo "make-captures.sh: $tool not found" >&2; exit 1; }
done

(cd "$dir/../../testdata/h2peer" && go build -o "$work/peer" .)
printf 'posted by nghttp\n' >"$work/nghttp-body"

# Without --immediate-mode, this kernel's packet ring hands tcpdump nothing
# before it stops.
# wait_port PORT waits until something listens on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "make-captures.sh: nothing listens on port $1" >&2
	return 1
}

# capture NAME PORT SERVER-MODE CLIENT-COMMAND...: the client command runs
# with PORT in $port, bounded by timeout.
capture() {
	local name=$1 port=$2 mode=$3
	shift 3
	"$work/peer" "$mode" "127.0.0.1:$port" &
	local server=$!
	pids+=("$server")
	wait_port "$port"
	tcpdump -i lo --immediate-mode -U -B 65536 -n -w "$dir/$name" "tcp port $port" 2>"$work/tcpdump.log" &
	local dump=$!
	pids+=("$dump")
	for _ in $(seq 50); do
		grep -qs "listening on" "$work/tcpdump.log" && break
		sleep 0.1
	done
	sleep 0.3 # "listening" comes a moment before packets are
	port=$port timeout 60 bash -c "$*"
	sleep 0.5
	kill -INT "$dump"
	wait "$dump" || true
	# Loopback bursts overflow tcpdump's default buffer: a capture with
	# holes would test gaps, not what the clients sent.
	if ! grep -q "^0 packets dropped by kernel" "$work/tcpdump.log"; then
		echo "make-captures.sh: $name: tcpdump dropped packets" >&2
		cat "$work/tcpdump.log" >&2
		exit 1
	fi
	kill "$server"
	wait "$server" 2>/dev/null || true
	local size
	size=$(stat -c %s "$dir/$name")
	echo "$name: $size bytes"
	[ "$size" -le $((200 * 1024)) ] || { echo "make-captures.sh: $name is over 200 KiB" >&2; exit 1; }
}

# curl 7.88 fails to reuse a prior-knowledge connection ("Error in the
# HTTP2 framing layer"), so each of its requests has a connection.
capture curl.pcap 18091 h2c-server '
	curl -sS --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$port/curl/a?x=1"
	curl -sS --http2-prior-knowledge -H "X-Test: curl" -H "Cookie: c=1; d=2" -o /dev/null "http://127.0.0.1:$port/curl/b"
	curl -sS --http2-prior-knowledge -o /dev/null -d "name=value&x=1" "http://127.0.0.1:$port/curl/post"'
capture nghttp.pcap 18092 h2c-server "
	nghttp -n http://127.0.0.1:\$port/nghttp/get
	nghttp -n -d $work/nghttp-body http://127.0.0.1:\$port/nghttp/post"
capture nghttp-upgrade.pcap 18093 h2c-server '
	nghttp -n -u "http://127.0.0.1:$port/nghttp/upgrade"'
capture h2load.pcap 18094 h2c-server '
	h2load -n 200 -c 4 -m 8 "http://127.0.0.1:$port/load" >/dev/null'
capture go-client.pcap 18095 h2c-server "$work/peer h2c-client 127.0.0.1:\$port"
capture grpc.pcap 18096 grpc-server "$work/peer grpc-client 127.0.0.1:\$port"

cd "$dir/../.."
H2FRAME_WRITE_SEEDS=1 go test -count=1 -run '^TestWriteFuzzSeeds$' ./h2frame/
