package bpf

//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel tee tee.c -- -I./include
