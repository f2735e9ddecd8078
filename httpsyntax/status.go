package httpsyntax

// ParseStatusLine parses an HTTP/1.x status line, without its line end:
// "HTTP/1." DIGIT SP 3DIGIT [SP reason-phrase] (RFC 9112 4). It returns the
// status code and the minor version; ok is false for anything else.
func ParseStatusLine(line []byte) (status, minor int, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return 0, 0, false
	}
	if line[7] < '0' || line[7] > '9' {
		return 0, 0, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		status = status*10 + int(c-'0')
	}
	return status, int(line[7] - '0'), true
}
