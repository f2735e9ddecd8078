// Command mkcaptures writes the synthesised captures of testdata/captures:
// one small pcap or pcapng file per edge case of replay (retransmissions,
// reordering, loss, one-sided and mid-stream captures, link types, HTTP
// framing corner cases), built packet by packet with gopacket from fixed
// timestamps and seeds, so that every run writes the same bytes. It also
// writes the README.md table that says what each file holds and what
// replaying it must give.
//
//	go run ./internal/mkcaptures -out testdata/captures
//
// Two more modes serve measurements of replay rather than tests:
//
//	go run ./internal/mkcaptures -big FILE -size 1GiB [-window 44]   # a large capture of realistic traffic
//	go run ./internal/mkcaptures -sink ADDR             # an HTTP/1.1 server that answers 200 to anything
package main
