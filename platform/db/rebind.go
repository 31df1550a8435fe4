package db

import (
	"strconv"
	"strings"
)

// rebind rewrites '?' placeholders to PostgreSQL's $1..$n. '?' inside single- or
// double-quoted text, or in a -- comment, is left alone. SQLite takes '?' as is.
func rebind(d Dialect, q string) string {
	if d != DialectPostgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	var quote byte // 0, '\'' or '"'
	comment := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case comment:
			if c == '\n' {
				comment = false
			}
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote re-opens on the next byte: same result
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			comment = true
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
