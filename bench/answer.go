package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
)

// readAnswer reads one HTTP/1.1 response with a Content-Length body (the
// bench's primary always sends one) and returns its status code.
func readAnswer(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := cutHeader(line)
		if !ok {
			return 0, fmt.Errorf("bad header line %q", line)
		}
		switch {
		case equalFold(name, "content-length"):
			length, err = strconv.Atoi(value)
			if err != nil || length < 0 {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case equalFold(name, "transfer-encoding"):
			return 0, errors.New("chunked answers are not expected from the bench primary")
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	_, err = br.Discard(length)
	return status, err
}

// cutHeader splits "Name: value\r\n".
func cutHeader(line []byte) (name []byte, value string, ok bool) {
	for i, b := range line {
		if b == ':' {
			v := line[i+1:]
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
				v = v[1:]
			}
			for len(v) > 0 && (v[len(v)-1] == '\n' || v[len(v)-1] == '\r' || v[len(v)-1] == ' ') {
				v = v[:len(v)-1]
			}
			return line[:i], string(v), true
		}
	}
	return nil, "", false
}

// equalFold compares an ASCII header name with a lower-case one.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
