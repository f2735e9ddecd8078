#!/usr/bin/env bash
# make-captures.sh rebuilds the real captures in this directory. It needs
# root (it creates network namespaces), iproute2, tcpdump and python3;
# dumpcap and tshark (Wireshark) are optional and add the pcapng capture.
#
#     sudo pcapfile/testdata/make-captures.sh
#
# A Python HTTP/1.1 client and server talk inside network namespaces that the
# script creates and removes: addresses in 198.18.0.0/15, and ::1, only;
# nothing leaves the namespaces. The client opens four connections
# (keep-alive GETs, a 20 KB POST written in three pieces, two pipelined GETs,
# an HTTP/1.0 GET), after one without data that checks the server is up,
# and sends one UDP datagram. For each capture NAME the
# script writes NAME.json with what the tests check: the packets and TCP
# segments that tcpdump counts, and per connection the client and server
# addresses and the exact bytes the client sent.
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
ns_a=shadowtee-cap-$$-a
ns_b=shadowtee-cap-$$-b

cleanup() {
	ip netns del "$ns_a" 2>/dev/null || true
	ip netns del "$ns_b" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "make-captures.sh: needs root (ip netns)" >&2; exit 1; }
for tool in ip tcpdump python3; do
	command -v "$tool" >/dev/null || { echo "make-captures.sh: $tool not found" >&2; exit 1; }
done

cat >"$work/server.py" <<'PY'
import http.server, socketserver, sys, socket

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = b"ok %s %s %d\n" % (self.command.encode(), self.path.encode(), len(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def __init__(self, addr):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)

Server((sys.argv[1], int(sys.argv[2]))).serve_forever()
PY

cat >"$work/client.py" <<'PY'
import base64, json, socket, sys, time

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
hostport = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, port)

def addr(a):
    return ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (a[0], a[1])

def wait_server():
    """Connects until the server answers; the connection that succeeds is
    in the capture (a connection without data), so it is recorded too."""
    for _ in range(100):
        try:
            s = socket.create_connection((host, port), timeout=1)
        except OSError:
            time.sleep(0.05)
            continue
        conns.append({"client": addr(s.getsockname()), "server": addr(s.getpeername()), "sent": ""})
        s.close()
        return
    sys.exit("server did not start")

def responses(s, n):
    """Reads n responses with Content-Length bodies (or up to EOF)."""
    buf = b""
    for _ in range(n):
        while b"\r\n\r\n" not in buf:
            more = s.recv(65536)
            if not more:
                return
            buf += more
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(buf) < length:
            buf += s.recv(65536)
        buf = buf[length:]

conns = []
def conn(steps):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = b""
    for data, answers in steps:
        s.sendall(data)
        sent += data
        if answers:
            responses(s, answers)
        else:
            time.sleep(0.05)  # a separate segment for each piece
    conns.append({"client": addr(s.getsockname()), "server": addr(s.getpeername()),
                  "sent": base64.b64encode(sent).decode()})
    s.close()

wait_server()
time.sleep(0.2)
get = lambda path, extra=b"": b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, hostport.encode(), extra)
conn([(get(b"/index.html"), 1),
      (get(b"/search?q=shadow&page=2", b"User-Agent: make-captures\r\nAccept: */*\r\n"), 1)])
body = bytes((i * 7 + 13) % 251 for i in range(20000))
head = b"POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (hostport.encode(), len(body))
conn([(head + body[:1000], 0), (body[1000:9000], 0), (body[9000:], 1)])
conn([(get(b"/pipelined/1") + get(b"/pipelined/2"), 2)])
conn([(b"GET /http10 HTTP/1.0\r\n\r\n", 1)])
if family == socket.AF_INET:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"not tcp", (host, 9))
    u.close()
time.sleep(0.3)
json.dump({"connections": conns}, open(out, "w"), indent=1)
PY

# capture NAME NS IFACE HOST OPTIONS...: runs the server and the client in
# NS (the client in $client_ns when set) while tcpdump records IFACE.
capture() {
	local name=$1 ns=$2 iface=$3 host=$4
	shift 4
	local cns=${client_ns:-$ns}
	ip netns exec "$ns" python3 "$work/server.py" "$host" 8080 &
	local server=$!
	if [ "${name##*.}" = pcapng ]; then
		ip netns exec "$ns" dumpcap -q -i lo -i any -w "$work/$name" 2>"$work/cap.log" &
	else
		ip netns exec "$ns" tcpdump -i "$iface" -w "$work/$name" "$@" 2>"$work/cap.log" &
	fi
	local cap=$!
	for _ in $(seq 100); do
		grep -qE 'listening on|Capturing on' "$work/cap.log" && break
		sleep 0.05
	done
	ip netns exec "$cns" python3 "$work/client.py" "$host" 8080 "$work/conns.json"
	sleep 0.5
	kill -INT "$cap"
	wait "$cap" || true
	kill "$server"
	wait "$server" 2>/dev/null || true
	install -m 644 "$work/$name" "$dir/$name"
	# libpcap cannot read a pcapng file whose interfaces have different link
	# types: Wireshark counts those.
	local packets segments reader=(tcpdump -nn -r)
	[ "${name##*.}" = pcapng ] && reader=(tshark -n -r)
	packets=$("${reader[@]}" "$dir/$name" 2>/dev/null | wc -l)
	segments=$("${reader[@]}" "$dir/$name" tcp 2>/dev/null | wc -l)
	python3 - "$work/conns.json" "$dir/${name%.*}.json" "$name" "$packets" "$segments" <<'PY'
import json, sys
facts = json.load(open(sys.argv[1]))
facts = {"file": sys.argv[3], "packets": int(sys.argv[4]), "segments": int(sys.argv[5]), **facts}
json.dump(facts, open(sys.argv[2], "w"), indent=1)
open(sys.argv[2], "a").write("\n")
PY
	echo "$name: $(stat -c %s "$dir/$name") bytes, $packets packets, $segments TCP segments"
}

# One namespace, loopback only.
ip netns add "$ns_a"
ip -n "$ns_a" link set lo up
ip -n "$ns_a" addr add 198.18.0.1/32 dev lo

capture lo-ipv4.pcap "$ns_a" lo 198.18.0.1
capture lo-ipv4-snaplen.pcap "$ns_a" lo 198.18.0.1 -s 120
capture lo-ipv6-sll.pcap "$ns_a" any ::1 -y LINUX_SLL
if command -v dumpcap >/dev/null && command -v tshark >/dev/null; then
	capture lo-ipv4-two-ifaces.pcapng "$ns_a" - 198.18.0.1
else
	echo "dumpcap or tshark not found: lo-ipv4-two-ifaces.pcapng left as it is" >&2
fi

# Two namespaces joined by a veth pair, captured on the server side with
# nanosecond timestamps in Linux cooked v2 framing. IPv6 is off on the veth
# so that only the traffic of the test shows (and ARP).
ip netns add "$ns_b"
ip link add st-cap-a netns "$ns_a" type veth peer name st-cap-b netns "$ns_b"
for ns in "$ns_a" "$ns_b"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip -n "$ns" link set lo up
done
ip -n "$ns_a" addr add 198.18.1.1/30 dev st-cap-a
ip -n "$ns_b" addr add 198.18.1.2/30 dev st-cap-b
ip -n "$ns_a" link set st-cap-a up
ip -n "$ns_b" link set st-cap-b up
client_ns=$ns_b capture veth-sll2-nano.pcap "$ns_a" any 198.18.1.1 --time-stamp-precision=nano
