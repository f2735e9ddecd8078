// Command readercost measures what reading the ring buffer costs: it loads
// the program, attaches it to the server end of a veth pair between two
// network namespaces of its own, runs the reader into a sink that throws the
// segments away, and reports the CPU time and context switches of this
// process over a measured window, idle or under a steady load of requests.
//
//	sudo go run ./bpf/internal/readercost -for 20s               # idle
//	sudo go run ./bpf/internal/readercost -for 20s -rate 1000    # 1,000 requests/s
//
// The load's client and server are this program again, run as child
// processes in the client and server namespaces, so that their CPU is not
// counted; what is counted is the reader, the Go runtime under it, and the
// kernel's work on its behalf (the BPF program runs in the sender's
// context and is not). Each request is one packet, so one record.
//
// CPU and context switches come from getrusage(RUSAGE_SELF), which sums
// every thread; /proc/self/status counts only the main thread, and the sum
// over /proc/self/task/*/status only threads still alive, so both are
// printed too, for comparison.
package main
