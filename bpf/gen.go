// Package bpf loads shadowtee's TC program, attaches it to interfaces and
// reads the segments it copies.
//
// The program (tee.c) and the layout it shares with Go (tee.h) are compiled
// by bpf2go into the committed tee_bpfel.o, so building the agent needs no
// C toolchain. Run `make generate` after changing the C source.
package bpf

//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel tee tee.c -- -I./include
